"""Registers the 'threads' execution backend."""

from __future__ import annotations

from collections.abc import Sequence

from oddjob_core.backends import ExecutionBackend
from oddjob_core.hookspecs import hookimpl

from .executor import ThreadsExecutor
from .processes import ProcessesExecutor, ProcessesOptions


@hookimpl
def oddjob_execution_backends() -> Sequence[ExecutionBackend]:
    """Offer ``executor = "threads"`` (the default) and ``executor = "processes"``."""
    return [
        ExecutionBackend(
            name="threads",
            factory=lambda runtime, options: ThreadsExecutor(runtime),
            description="per-queue coordinator + worker threads; sync and async jobs",
        ),
        ExecutionBackend(
            name="processes",
            factory=lambda runtime, options: ProcessesExecutor(runtime, options),
            description="the threads coordinator, each worker a child process: CPU-bound jobs",
            options=ProcessesOptions,
        ),
    ]
