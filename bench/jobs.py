"""The one workload every system runs: a no-op taking an int and a short string.

Each execution appends the job's index as one 4-byte record to the file named
by ``BENCH_COUNTER`` (opened with O_APPEND: concurrent appends from threads and
processes never overwrite or interleave). The driver watches that file's size
while the queue drains, then reads every index: executions are counted and
checked job by job outside every job library, so a lost job cannot hide behind
a duplicate of another.
"""

from __future__ import annotations

import os
import struct
import time

RECORD = struct.Struct("<I")  # one execution: the job's index

_COUNTER = os.environ.get("BENCH_COUNTER")
_FD = os.open(_COUNTER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _COUNTER else -1


def noop(i: int, s: str) -> None:
    """Record one execution of job ``i``; do nothing else."""
    os.write(_FD, RECORD.pack(i))


#: ``noop_timed``'s clock: perf_counter of the first and the latest execution in this process
TIMES = [0.0, 0.0]


def noop_timed(i: int, s: str) -> None:
    """``noop`` that also notes when it ran, for in-process drains (a burst run ends on a tick)."""
    os.write(_FD, RECORD.pack(i))
    now = time.perf_counter()
    TIMES[0] = TIMES[0] or now
    TIMES[1] = now
