"""Registers the 'threads' execution backend."""

from __future__ import annotations

from collections.abc import Sequence

from oddjob_core.backends import ExecutionBackend
from oddjob_core.hookspecs import hookimpl

from .executor import ThreadsExecutor


@hookimpl
def oddjob_execution_backends() -> Sequence[ExecutionBackend]:
    """Offer ``executor = "threads"`` (the default)."""
    return [
        ExecutionBackend(
            name="threads",
            factory=lambda runtime, options: ThreadsExecutor(runtime),
            description="per-queue coordinator + worker threads; sync and async jobs",
        )
    ]
