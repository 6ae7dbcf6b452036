"""The core's own hook implementations, registered like any plugin's (and overridable)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl
from .context import JobContext


@hookimpl(trylast=True)
def oddjob_resolve_instance(cls: type) -> object:
    """Fallback dependency resolution: construct the class with no arguments."""
    return cls()


@hookimpl(trylast=True)
def oddjob_run_job(context: JobContext, call: Callable[[], Any]) -> Any:
    """The innermost run: call the job. Wrappers from plugins sit around this."""
    return call()
