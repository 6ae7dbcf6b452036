"""The one workload every system runs: a no-op taking an int and a short string.

Each execution appends one byte to the file named by ``BENCH_COUNTER`` (opened
with O_APPEND, so concurrent appends from threads never overwrite each other).
The driver watches that file's size: executions are counted outside every job
library, so a skipped or duplicated job cannot hide.
"""

from __future__ import annotations

import os

_COUNTER = os.environ.get("BENCH_COUNTER")
_FD = os.open(_COUNTER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _COUNTER else -1


def noop(i: int, s: str) -> None:
    """Count one execution; do nothing else."""
    os.write(_FD, b".")
