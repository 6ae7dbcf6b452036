"""Job targets for the worker-process tests (imported by `oddjob worker` through PYTHONPATH)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from oddjob_core.engine.context import current_job


def _append(path: str, line: str) -> None:
    # one small O_APPEND write per line: lines from concurrent processes never interleave
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def append_line(path: str, line: str, seconds: float = 0.0) -> str:
    """Work for ``seconds``, then record this run (duplicates show up as repeated lines)."""
    time.sleep(seconds)
    _append(path, line)
    return line


def fail_if(path: str, line: str, fail: bool, seconds: float = 0.0) -> str:
    """Work for ``seconds``, record the run; raise when ``fail`` (those end in the failed queue)."""
    time.sleep(seconds)
    _append(path, line)
    if fail:
        raise RuntimeError(f"job {line} fails on purpose")
    return line


def hang_while_flag(path: str, flag: str) -> str:
    """Log the attempt; while ``flag`` exists, hang (to be SIGKILLed), else finish."""
    ctx = current_job()
    _append(path, f"start attempt={ctx.attempt} recovered={ctx.recovered}")
    while Path(flag).exists():
        time.sleep(0.05)
    _append(path, f"end attempt={ctx.attempt}")
    return "done"


def flaky(path: str, line: str) -> str:
    """Fail the first attempt (retried through the delay ladder), succeed afterwards."""
    ctx = current_job()
    _append(path, f"{line} attempt={ctx.attempt}")
    if ctx.attempt == 1:
        raise RuntimeError(f"{line}: first attempt fails")
    return line
