"""Measuring without help from the measured: /proc CPU times and the counter file of job indices."""

from __future__ import annotations

import os
import statistics
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from .jobs import RECORD

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    pid: int
    ppid: int
    comm: str
    cpu: float  # utime + stime, seconds
    child_cpu: float  # cutime + cstime: children already waited for


def processes() -> dict[int, Proc]:
    """Every process visible in /proc (ones that vanish while reading are skipped)."""
    out: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        # comm may contain spaces and parentheses: split around the last ')'
        head, _, rest = raw.rpartition(")")
        comm = head.partition("(")[2]
        fields = rest.split()
        # fields[0] is state (field 3); utime is field 14 -> fields[11]
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        out[int(entry)] = Proc(
            int(entry), int(fields[1]), comm, (utime + stime) / _TICK, (cutime + cstime) / _TICK
        )
    return out


def tree_cpu(root: int, procs: dict[int, Proc] | None = None) -> float:
    """CPU seconds of ``root`` and all its live descendants, plus children they reaped."""
    procs = processes() if procs is None else procs
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        p = procs.get(pid)
        if p is None:
            continue
        total += p.cpu + p.child_cpu
        stack.extend(children.get(pid, ()))
    return total


def server_cpu(kind: str | None, procs: dict[int, Proc] | None = None) -> float | None:
    """CPU seconds of the broker or database server (``rabbitmq``: beam.smp; ``postgres``)."""
    if kind is None:
        return None
    procs = processes() if procs is None else procs
    if kind == "rabbitmq":
        return sum(p.cpu + p.child_cpu for p in procs.values() if p.comm == "beam.smp")
    if kind == "postgres":
        # backends are named "postgres" too; the postmaster's child time covers exited ones
        return sum(p.cpu + p.child_cpu for p in procs.values() if p.comm.startswith("postgres"))
    return None


def counted(fd: int) -> int:
    """Executions recorded so far in the counter file (one fixed-size record each)."""
    return os.fstat(fd).st_size // RECORD.size


@dataclass(frozen=True)
class Validation:
    """Which jobs ran, checked one by one against the indices that were enqueued."""

    executions: int
    lost: int  # enqueued, never ran
    duplicated: int  # extra runs of jobs that ran more than once
    unknown: int  # runs of indices never enqueued

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicated == self.unknown == 0

    def __str__(self) -> str:
        return f"{self.lost} lost, {self.duplicated} run twice, {self.unknown} unknown"


def validate(path: str | os.PathLike[str], expected: int) -> Validation:
    """Compare the counter file's indices with the jobs ``0 .. expected - 1``."""
    runs = array("I")
    data = open(path, "rb").read()  # noqa: SIM115 - read whole, closed at once
    runs.frombytes(data[: len(data) - len(data) % RECORD.size])
    if sys.byteorder != "little":
        runs.byteswap()
    seen = bytearray(expected)
    duplicated = unknown = 0
    for i in runs:
        if i >= expected:
            unknown += 1
        elif seen[i]:
            duplicated += 1
        else:
            seen[i] = 1
    return Validation(len(runs), expected - sum(seen), duplicated, unknown)


@dataclass
class DrainTrace:
    """(time, count) samples of the counter file taken while a queue drains."""

    points: list[tuple[float, int]] = field(default_factory=list)
    cpu_first: tuple[float, float | None] = (0.0, None)
    cpu_last: tuple[float, float | None] = (0.0, None)

    def time_reaching(self, count: int) -> float | None:
        for t, c in self.points:
            if c >= count:
                return t
        return None

    def rate(self, lo: int, hi: int) -> float | None:
        """Executions per second between the counter reaching ``lo`` and reaching ``hi``."""
        t0, t1 = self.time_reaching(lo), self.time_reaching(hi)
        if t0 is None or t1 is None or t1 <= t0:
            return None
        return (hi - lo) / (t1 - t0)


def watch_drain(
    fd: int,
    target: int,
    snapshot: Callable[[], tuple[float, float | None]],
    *,
    stall_timeout: float,
    deadline: float,
    alive: Callable[[], bool],
    interval: float = 0.002,
) -> DrainTrace:
    """Poll the counter until it reaches ``target``; CPU snapshots at first and last execution."""
    trace = DrainTrace()
    last_change = time.monotonic()
    seen = 0
    while True:
        now = time.monotonic()
        size = counted(fd)
        if size != seen:
            if seen == 0:
                trace.cpu_first = snapshot()
            trace.points.append((now, size))
            seen, last_change = size, now
            if size >= target:
                trace.cpu_last = snapshot()
                return trace
        elif now - last_change > stall_timeout or now > deadline:
            trace.cpu_last = snapshot()
            return trace
        elif not alive():
            # the worker died; one last look, then give up
            size = counted(fd)
            if size == seen:
                trace.cpu_last = snapshot()
                return trace
            continue
        time.sleep(interval)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
