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


def append_line(path: str, line: str) -> str:
    """Record this run (duplicates show up as repeated lines)."""
    _append(path, line)
    return line


def hang_while_flag(path: str, flag: str) -> str:
    """Log the attempt; while ``flag`` exists, hang (to be SIGKILLed), else finish."""
    ctx = current_job()
    _append(path, f"start attempt={ctx.attempt} recovered={ctx.recovered}")
    while Path(flag).exists():
        time.sleep(0.05)
    _append(path, f"end attempt={ctx.attempt}")
    return "done"
