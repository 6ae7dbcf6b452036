"""Job targets for the worker-process tests (imported by `oddjob worker` through PYTHONPATH)."""

from __future__ import annotations

from oddjob_core.engine.context import current_job
from oddjob_core.testing.targets import append_line


def fail_if(path: str, line: str, fail: bool, seconds: float = 0.0) -> str:
    """Work for ``seconds``, record the run; raise when ``fail`` (those end in the failed queue)."""
    append_line(path, line, seconds)
    if fail:
        raise RuntimeError(f"job {line} fails on purpose")
    return line


def flaky(path: str, line: str) -> str:
    """Fail the first attempt (retried through the delay ladder), succeed afterwards."""
    ctx = current_job()
    append_line(path, f"{line} attempt={ctx.attempt}")
    if ctx.attempt == 1:
        raise RuntimeError(f"{line}: first attempt fails")
    return line
