"""Tiny job targets the suites and examples enqueue."""

from __future__ import annotations


def noop(n: int = 0, s: str = "") -> None:
    """Do nothing: measures the machinery, not the job."""
