"""Registers the 'asyncio' execution backend."""

from __future__ import annotations

from collections.abc import Sequence

from oddjob_core.backends import ExecutionBackend
from oddjob_core.hookspecs import hookimpl

from .executor import AsyncioExecutor, AsyncioOptions


@hookimpl
def oddjob_execution_backends() -> Sequence[ExecutionBackend]:
    """Offer ``executor = "asyncio"``."""
    return [
        ExecutionBackend(
            name="asyncio",
            factory=lambda runtime, options: AsyncioExecutor(runtime, options),
            description="one event loop: many concurrent async jobs; sync jobs in a thread pool",
            options=AsyncioOptions,
        )
    ]
