"""Registers the in-memory store through the same hook third-party plugins use."""

from __future__ import annotations

from collections.abc import Sequence

from ..backends import StorageBackend
from ..hookspecs import hookimpl
from .store import MemoryStorage


@hookimpl
def oddjob_storage_backends() -> Sequence[StorageBackend]:
    """Offer ``storage = "memory"``: one process, nothing survives it."""
    return [
        StorageBackend(
            name="memory",
            factory=lambda options: MemoryStorage(),
            description="in-process store for tests and examples; jobs vanish with the process",
        )
    ]
