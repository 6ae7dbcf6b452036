"""The installed oddjob-core version, read from the distribution's metadata (pyproject.toml is the one place it is written)."""

from __future__ import annotations

import importlib.metadata as md


def core_version() -> str:
    """``oddjob-core``'s installed version; ``0+unknown`` when run from a tree that was never installed."""
    try:
        return md.version("oddjob-core")
    except md.PackageNotFoundError:
        return "0+unknown"
