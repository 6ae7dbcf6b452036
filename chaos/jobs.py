"""The jobs the chaos workers run: each execution is logged outside the store.

Every process appends to its own file in ``log_dir`` (``<pid>.log``), one line
per event, so nothing the store says (or loses) can hide an execution:
``start <key> <attempt>`` when a job begins and ``done <key> <attempt>`` when it
returns. A job that is meant to fail raises after logging ``start``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from oddjob_core import job
from oddjob_core.engine import current_job


def _log(log_dir: str, line: str) -> None:
    path = Path(log_dir) / f"{os.getpid()}.log"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())  # one write: whole lines, even under SIGKILL
    finally:
        os.close(fd)


@job(queue="chaos")
def work(
    log_dir: str, key: str, seconds: float = 0.0, fail: bool = False, payload: Any = None
) -> str:
    """Log, sleep ``seconds``, then succeed (or raise when ``fail``)."""
    attempt = current_job().attempt
    _log(log_dir, f"start {key} {attempt}")
    if seconds:
        time.sleep(seconds)
    if fail:
        raise RuntimeError(f"chaos job {key} fails on purpose")
    _log(log_dir, f"done {key} {attempt}")
    return key


def read_log(log_dir: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(starts, dones) per job key, over every process's file."""
    starts: dict[str, int] = {}
    dones: dict[str, int] = {}
    for path in log_dir.glob("*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 3:
                continue
            table = starts if parts[0] == "start" else dones
            table[parts[1]] = table.get(parts[1], 0) + 1
    return starts, dones
