"""Job targets the conformance suites and examples enqueue; they record what they saw.

Records live in this process (``SEEN``), or, after ``share_across_processes(folder)``,
in files that forked worker processes append to and every ``SEEN[key]`` reads:
an executor that runs jobs in child processes passes the same suite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import decimal
import enum
import fcntl
import os
import pickle
import signal
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec

from ..engine.context import current_job
from ..retrying import Retry

_shared: list[Path] = []  # the folder records go to, once shared across processes
_lock = threading.Lock()
_running = 0


class _Seen(defaultdict[str, list[Any]]):
    """``key`` -> the values recorded under it, in order (read from the shared file if shared)."""

    def __getitem__(self, key: str) -> list[Any]:
        if _shared:
            return [value for k, value in _read_shared() if k == key]
        return super().__getitem__(key)


class _MaxRunning(list[int]):
    """``MAX_RUNNING[0]``: most ``sleep_for`` jobs seen running at once (across processes if shared)."""

    def __getitem__(self, index: Any) -> Any:
        if _shared:
            return _shared_counter()[1]
        return super().__getitem__(index)


SEEN: defaultdict[str, list[Any]] = _Seen(list)
MAX_RUNNING: list[int] = _MaxRunning([0])


def share_across_processes(folder: str | os.PathLike[str] | None) -> None:
    """Record into files in ``folder`` (None: back to in-process), before worker processes fork.

    Test-only: records are pickled test values exchanged between one test's processes.
    """
    _shared.clear()
    if folder is not None:
        _shared.append(Path(folder))
        Path(folder).mkdir(parents=True, exist_ok=True)
    reset()


def _read_shared() -> list[tuple[str, Any]]:
    path = _shared[0] / "seen.bin"
    if not path.exists():
        return []
    data, out, at = path.read_bytes(), [], 0
    while at + 4 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        if at + 4 + size > len(data):
            break  # a write in progress
        out.append(pickle.loads(data[at + 4 : at + 4 + size]))
        at += 4 + size
    return out


def _shared_counter(delta: int = 0) -> tuple[int, int]:
    """Add ``delta`` to the shared running count under a file lock; return (running, max)."""
    with open(_shared[0] / "running", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        running, most = (int(n) for n in (f.read().split() or ["0", "0"]))
        running += delta
        most = max(most, running)
        f.seek(0)
        f.truncate()
        f.write(f"{running} {most}")
        return running, most


def record(key: str, value: Any) -> None:
    """Remember ``value`` under ``key`` (thread-safe; process-safe once shared)."""
    if _shared:
        data = pickle.dumps((key, value))
        _append_bytes(_shared[0] / "seen.bin", len(data).to_bytes(4, "big") + data)
        return
    with _lock:
        SEEN[key].append(value)


def reset() -> None:
    """Forget everything recorded (call at the start of each test)."""
    with _lock:
        SEEN.clear()
        list.__setitem__(MAX_RUNNING, 0, 0)
        if _shared:
            for name in ("seen.bin", "running"):
                (_shared[0] / name).unlink(missing_ok=True)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Order(msgspec.Struct):
    id: uuid.UUID
    total: decimal.Decimal
    lines: list[Point]


def noop(n: int = 0, s: str = "") -> None:
    """Do nothing: measures the machinery, not the job."""


def echo(key: str, value: Any) -> Any:
    """Record and return ``value``."""
    record(key, value)
    return value


def typed(
    key: str,
    when: dt.datetime,
    day: dt.date,
    ident: uuid.UUID,
    amount: decimal.Decimal,
    blob: bytes,
    colour: Colour,
    point: Point,
    order: Order,
    maybe: int | None,
    nested: dict[str, list[dt.datetime]],
    *rest: int,
    **extra: decimal.Decimal,
) -> None:
    """Record every argument so a test can check it came back as its annotated type."""
    record(
        key,
        dict(
            when=when,
            day=day,
            ident=ident,
            amount=amount,
            blob=blob,
            colour=colour,
            point=point,
            order=order,
            maybe=maybe,
            nested=nested,
            rest=rest,
            extra=extra,
        ),
    )


def fail_times(key: str, failures: int) -> str:
    """Raise ``RuntimeError`` on the first ``failures`` attempts, then succeed."""
    ctx = current_job()
    record(key, ctx.attempt)
    if ctx.attempt <= failures:
        raise RuntimeError(f"planned failure {ctx.attempt} of {failures}")
    return f"succeeded on attempt {ctx.attempt}"


def raise_value_error(key: str) -> None:
    """Always raise ``ValueError``."""
    record(key, current_job().attempt)
    raise ValueError("bad value, retrying will not help")


def ask_retry(key: str, delay: float) -> str:
    """Ask for one retry after ``delay`` seconds, then succeed."""
    record(key, time.monotonic())
    if current_job().attempt == 1:
        raise Retry("not yet", delay=delay)
    return "done"


def sleep_for(key: str, seconds: float) -> None:
    """Sleep, tracking how many jobs run at once."""
    _count_running(1)
    try:
        record(key, "start")
        time.sleep(seconds)
        record(key, "end")
    finally:
        _count_running(-1)


def _count_running(delta: int) -> None:
    global _running
    if _shared:
        _shared_counter(delta)
        return
    with _lock:
        _running += delta
        list.__setitem__(MAX_RUNNING, 0, max(list.__getitem__(MAX_RUNNING, 0), _running))


def wait_for_cancel(key: str, seconds: float) -> str:
    """Wait up to ``seconds`` for the job's cancellation; record "cancelled" or "not cancelled"."""
    cancelled = current_job().cancel_event.wait(seconds)
    outcome = "cancelled" if cancelled else "not cancelled"
    record(key, outcome)
    return outcome


def cooperative(key: str, seconds: float) -> None:
    """Loop until done or cancelled (cooperative timeout)."""
    ctx = current_job()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ctx.raise_if_cancelled()
        time.sleep(0.02)
    record(key, "finished")


async def async_echo(key: str, value: int) -> int:
    """An ``async def`` job."""
    await asyncio.sleep(0.01)
    record(key, value)
    return value * 2


async def async_sleep(key: str, seconds: float) -> None:
    """An ``async def`` job that may outlive its timeout."""
    record(key, "start")
    await asyncio.sleep(seconds)
    record(key, "end")


def context_info(key: str) -> None:
    """Record the running job's context."""
    ctx = current_job()
    record(key, (ctx.job_id, ctx.attempt, ctx.recovered))


class Mailer:
    """A class whose method is a job; the instance comes from ``oddjob_resolve_instance``."""

    def __init__(self, sender: str = "default") -> None:
        self.sender = sender

    def send(self, key: str, to: str) -> str:
        record(key, (self.sender, to))
        return f"{self.sender}->{to}"


def mark_file(directory: str, name: str, seconds: float = 0.0) -> str:
    """Create ``<name>.start``, sleep, create ``<name>.end``: visible across processes."""
    folder = Path(directory)
    (folder / f"{name}.start").touch()
    time.sleep(seconds)
    (folder / f"{name}.end").touch()
    return name


def count_run(path: str, pause: float = 0.0, pause_after: float = 0.0) -> None:
    """Append this job's id to ``path`` (O_APPEND: safe across processes).

    ``pause`` sleeps before recording, ``pause_after`` after it: a worker killed
    during ``pause_after`` has done the work without recording the outcome, so
    the job runs (and is counted) twice, as at-least-once allows.
    """
    time.sleep(pause)
    _append(path, str(current_job().job_id))
    time.sleep(pause_after)


def _append(path: str, line: str) -> None:
    """Append ``line`` in one small O_APPEND write: concurrent processes' lines never interleave."""
    _append_bytes(path, (line + "\n").encode())


def _append_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def append_line(path: str, line: str, seconds: float = 0.0) -> str:
    """Work for ``seconds``, then append ``line`` to ``path``: a job run twice shows as a repeat."""
    time.sleep(seconds)
    _append(path, line)
    return line


def hang_while_flag(path: str, flag: str) -> str:
    """Log the attempt to ``path``; hang while file ``flag`` exists (to be SIGKILLed), then finish.

    The lines (``start attempt=N recovered=B``, ``end attempt=N``) show which
    attempt was cut short and that its rerun knew it was recovering one.
    """
    ctx = current_job()
    _append(path, f"start attempt={ctx.attempt} recovered={ctx.recovered}")
    while Path(flag).exists():
        time.sleep(0.05)
    _append(path, f"end attempt={ctx.attempt}")
    return "done"


def process_id(key: str) -> int:
    """Record and return the id of the process running the job."""
    pid = os.getpid()
    record(key, pid)
    return pid


def die_on_first_attempt(key: str) -> int:
    """SIGKILL the process running the first attempt (a crash mid-job); later attempts succeed."""
    ctx = current_job()
    record(key, (ctx.attempt, os.getpid()))
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return ctx.attempt
