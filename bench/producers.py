"""``python -m bench --producers``: how far 16 producer threads get in one CPython process.

Issue #22 asks that 16 threads enqueuing one job per call reach 3 x one thread.
Group commit shares the durable write (an fsync, a confirm) among the threads
that queue behind it, but not the Python each enqueue runs, and only one thread
runs Python at a time. So the ratio depends on how much of one thread's call is
*waiting*: this bench shows the ceiling beside the real store, side by side in
one process, rounds interleaved:

- ``memory``: the core's memory store (no I/O): the enqueue path and 16 threads
  contending for the GIL, nothing else; the most any store could reach;
- ``memory+wait``: the same store, whose ``add`` also sleeps ``--wait`` seconds
  (default 40 us, this machine's ``fdatasync``): a store that costs nothing but
  a wait that releases the GIL, as an ideal durable store would;
- ``filesystem``: oddjob-filesystem in a temporary folder (durable: the journal's
  ``fdatasync`` per write).

Each case enqueues ``--single`` jobs one by one from one thread, waits 2 s (the
filesystem's spooler turns journaled jobs into files meanwhile, as in the main
bench), then ``--concurrent`` jobs from 16 threads (``bench.driver``'s
producers). It prints medians (min-max) of the rates, the ratio, and the
process's CPU per job in each phase (``process_time``: every thread).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .driver import PRODUCERS, SETTLE, enqueue_concurrently

CASES = ("memory", "memory+wait", "filesystem")


class _Producer:
    """What ``enqueue_concurrently`` drives: one app, ``enqueue_one``."""

    def __init__(self, app: Any) -> None:
        from .jobs import noop

        self.app = app
        self.noop = noop

    def enqueue_one(self, i: int) -> None:
        self.app.enqueue(self.noop, i, "x")


def _waiting_memory(wait: float) -> Any:
    """A memory store whose ``add`` also waits ``wait`` seconds without the GIL."""
    from oddjob_core.memory.store import MemoryStorage

    class WaitingMemory(MemoryStorage):
        def add(self, jobs: Sequence[Any]) -> None:
            super().add(jobs)
            time.sleep(wait)

    return WaitingMemory()


def make_app(case: str, folder: Path, wait: float) -> Any:
    """A fresh app for one round of ``case``."""
    from oddjob_core import Oddjob
    from oddjob_core.memory.store import MemoryStorage

    common: dict[str, Any] = {"allowed_prefixes": ["bench"], "imports": ["bench.jobs"]}
    if case == "memory":
        return Oddjob(storage_instance=MemoryStorage(), **common)
    if case == "memory+wait":
        return Oddjob(storage_instance=_waiting_memory(wait), **common)
    config = folder / "oddjob.toml"
    config.write_text(f'storage = "filesystem"\n[filesystem]\npath = "{folder / "store"}"\n')
    return Oddjob(config, **common)


def _timed(enqueue: Callable[[], float], n: int) -> tuple[float, float]:
    """(jobs/s, CPU us per job) of ``enqueue``, which enqueues ``n`` jobs and returns seconds."""
    cpu = time.process_time()
    wall = enqueue()
    return n / wall, (time.process_time() - cpu) / n * 1e6


def _one_by_one(producer: _Producer, indices: range) -> float:
    """Enqueue ``indices`` one job per call from this thread; return seconds."""
    began = time.perf_counter()
    for i in indices:
        producer.enqueue_one(i)
    return time.perf_counter() - began


def one_round(case: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-producers-") as tmp:
        app = make_app(case, Path(tmp), args.wait)
        producer = _Producer(app)
        try:
            producer.enqueue_one(-1)  # opens the store: not timed
            single, single_cpu = _timed(
                lambda: _one_by_one(producer, range(args.single)), args.single
            )
            time.sleep(SETTLE)
            start = args.single
            many, many_cpu = _timed(
                lambda: enqueue_concurrently(producer, range(start, start + args.concurrent)),
                args.concurrent,
            )
            time.sleep(SETTLE)
        finally:
            app.close()
    return {
        "single": single,
        "single_cpu": single_cpu,
        "many": many,
        "many_cpu": many_cpu,
        "ratio": many / single,
    }


def _spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench -- --producers", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--single", type=int, default=3000, help="jobs from one thread")
    parser.add_argument("--concurrent", type=int, default=3000, help="jobs from 16 threads")
    parser.add_argument("--wait", type=float, default=40e-6, help="memory+wait's sleep per add")
    parser.add_argument("--cases", default=",".join(CASES), help=f"subset of {', '.join(CASES)}")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if min(args.rounds, args.single, args.concurrent) < 1:
        parser.error("--rounds, --single and --concurrent must each be at least 1")
    print(
        f"producers: {PRODUCERS} threads vs 1, {args.rounds} interleaved round(s), "
        f"{args.single:,} + {args.concurrent:,} jobs per case, wait {args.wait * 1e6:.0f} us"
    )
    results: dict[str, list[dict[str, float]]] = {c: [] for c in cases}
    for k in range(args.rounds):
        order = cases if k % 2 == 0 else cases[::-1]  # neither end always runs first
        for case in order:
            r = one_round(case, args)
            results[case].append(r)
            print(
                f"  round {k + 1} {case:12s} 1 thread {r['single']:>8,.0f}/s "
                f"16 threads {r['many']:>8,.0f}/s ratio {r['ratio']:.2f}",
                flush=True,
            )
    print("\n| case | 1 thread/s | CPU us/job | 16 threads/s | CPU us/job | 16 / 1 |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        rows = results[case]

        def col(key: str, rows: list[dict[str, float]] = rows) -> list[float]:
            return [r[key] for r in rows]

        print(
            f"| {case} | {_spread(col('single'))} | {_spread(col('single_cpu'))} | "
            f"{_spread(col('many'))} | {_spread(col('many_cpu'))} | "
            f"{_spread(col('ratio'), '{:.2f}')} |"
        )
    return 0
