"""``python -m bench --executors``: the executors side by side, each case in its own process.

- ``sleep``: N jobs of ``await asyncio.sleep(1)`` on the asyncio executor at
  concurrency 1,000 (the physical limit is 1,000 jobs/s), on the memory store,
  PostgreSQL and RabbitMQ (fresh database / queue prefix per run), beside 160
  such jobs on the threads executor's 8 workers (its limit: 8 jobs/s);
- ``cpu``: 16 CPU-bound jobs of ~0.5 s each (calibrated on this machine) on
  ``threads`` and on ``processes``, 2 workers each (the machine's cores), and
  on a bare ``multiprocessing`` pool of 2: what the machine gives right now;
- ``noop``: the threads executor's no-op drain on the memory store (8
  workers); with ``--baseline PATH`` (another checkout) the same case runs
  from that tree too, interleaved: the A/B of an engine change.

Runs are interleaved (A B A B ...) and every ratio is a median of per-run
ratios. The machine is shared: read ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from . import child

HERE = Path(__file__).resolve().parent


def _calibrate(seconds: float) -> int:
    from bench.executor_jobs import burn

    rounds = 200_000
    while True:  # CPU time, not wall time: the same work whatever the machine's load
        started = time.process_time()
        burn(rounds)
        took = time.process_time() - started
        if took > 0.1:
            return int(rounds * seconds / took)
        rounds *= 2


def _settings(storage: str) -> tuple[dict[str, Any], Any]:
    """Settings for a fresh store, and a cleanup function (None: delete the topology)."""
    if storage == "memory":
        return {"storage": "memory"}, lambda: None
    name = f"oddjob_bench_exec_{uuid.uuid4().hex[:8]}"
    if storage == "postgres":
        from bench.services import pg_create_database, pg_drop_database

        dsn = pg_create_database(name)
        return {"storage": "postgres", "postgres": {"dsn": dsn}}, lambda: pg_drop_database(name)
    if storage == "rabbitmq":  # a fresh prefix on the default vhost (rabbitmqctl is slow here)
        from bench.services import AMQP_URL

        prefix = f"{name}."
        return {"storage": "rabbitmq", "rabbitmq": {"url": AMQP_URL, "prefix": prefix}}, None
    raise SystemExit(f"unknown storage {storage}")


def run_pool(case: dict[str, Any]) -> dict[str, Any]:
    """The machine's own ceiling for the CPU case: the same jobs on a bare process pool."""
    import multiprocessing

    from bench.executor_jobs import burn

    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(case["workers"]) as pool:
        pool.map(burn, [case["rounds"]] * case["n"], chunksize=1)
    took = time.perf_counter() - started
    return {"seconds": took, "rate": case["n"] / took}


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """In the case's own process: enqueue, then time a burst drain."""
    from bench import executor_jobs
    from oddjob_core import Oddjob, call

    if case["executor"] == "pool":
        return run_pool(case)
    settings, cleanup = _settings(case["storage"])
    try:
        app = Oddjob(
            **settings,
            executor=case["executor"],
            allowed_prefixes=["bench"],
            poll_interval=0.05,
            lease=60.0,
        )
        n = case["n"]
        if case["job"] == "nap":
            calls = [call(executor_jobs.nap, case["seconds"]) for _ in range(n)]
        elif case["job"] == "burn":
            calls = [call(executor_jobs.burn, case["rounds"]) for _ in range(n)]
        else:
            calls = [call(executor_jobs.noop, i) for i in range(n)]
        for start in range(0, n, 1000):
            app.enqueue_many(calls[start : start + 1000])
        extra: dict[str, Any] = {}
        if "schedules" in inspect.signature(app.run_worker).parameters:
            extra["schedules"] = False  # a baseline tree may predate schedules
        started = time.perf_counter()
        app.run_worker(workers=case["workers"], burst=True, handle_signals=False, **extra)
        took = time.perf_counter() - started
        if cleanup is None:
            app.storage.delete_topology(["default"])  # type: ignore[attr-defined]
        app.close()
        return {"seconds": took, "rate": n / took}
    finally:
        if cleanup is not None:
            cleanup()


def _spawn(case: dict[str, Any], tree: Path | None) -> dict[str, Any]:
    paths = [str(HERE.parent)]
    if tree is not None:  # the baseline's oddjob_core, plugins and bench; not this tree's
        paths = [str(tree), *(str(p) for p in sorted((tree / "plugins").glob("*")))]
    return child.run_case("bench.executors", case, paths=paths, cwd=tree)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench -- --executors")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run, 2,000 sleeps")
    parser.add_argument("--n", type=int, default=10_000, help="sleep jobs (default 10,000)")
    parser.add_argument(
        "--storages", default="memory,postgres,rabbitmq", help="stores for the sleep case"
    )
    parser.add_argument("--baseline", type=Path, help="another checkout for the no-op A/B")
    parser.add_argument(
        "--only", default="", help="run only the cases whose name contains one of these (a,b)"
    )
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    runs = 1 if args.quick else args.runs
    n_sleep = 2_000 if args.quick else args.n
    rounds = _calibrate(0.5)
    cases: list[tuple[str, dict[str, Any], Path | None]] = []
    storages = [name for name in args.storages.split(",") if name]
    for storage in storages:
        cases.append(
            (
                f"sleep asyncio x1000 {storage}",
                dict(storage=storage, executor="asyncio", workers=1000, job="nap", seconds=1.0),
                None,
            )
        )
        cases[-1][1]["n"] = n_sleep
        cases.append(  # the same jobs on 8 threads: 8 at a time (fewer jobs, same rate)
            (
                f"sleep threads x8 {storage}",
                dict(storage=storage, executor="threads", workers=8, job="nap", seconds=1.0, n=160),
                None,
            )
        )
    for executor in ("threads", "processes", "pool"):
        cases.append(
            (
                f"cpu {executor} x2",
                dict(
                    storage="memory", executor=executor, workers=2, job="burn", n=16, rounds=rounds
                ),
                None,
            )
        )
    noop = dict(storage="memory", executor="threads", workers=8, job="noop", n=20_000)
    cases.append(("noop threads x8", noop, None))
    if args.baseline:
        cases.append(("noop threads x8 (baseline)", noop, args.baseline))
    if args.only:
        cases = [c for c in cases if any(word in c[0] for word in args.only.split(","))]
    print(f"executors bench: {runs} run(s), CPU job = {rounds:,} rounds (0.5 s of CPU here)")
    print(f"load average now: {os.getloadavg()}")
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in cases}
    for run in range(runs):
        order = cases[run % len(cases) :] + cases[: run % len(cases)]
        for name, case, tree in order:
            result = _spawn(case, tree)
            results[name].append(result)
            shown = (
                f"{result['rate']:,.1f} jobs/s in {result['seconds']:.2f} s"
                if "rate" in result
                else f"failed: {result['error']}"
            )
            print(f"  run {run + 1} {name:<30} {shown}", flush=True)

    def rates(name: str) -> list[float]:
        return [r["rate"] for r in results.get(name, []) if "rate" in r]

    print("\nmedians:")
    for name, _, _ in cases:
        if rates(name):
            print(f"  {name:<30} {statistics.median(rates(name)):,.1f} jobs/s")
    goals = []
    for storage in storages:
        r = rates(f"sleep asyncio x1000 {storage}")
        if r:
            ratio = statistics.median(r) / 1000
            mark = "met" if ratio >= 0.9 or storage != "memory" else "MISS"
            goals.append(
                f"asyncio sleep(1) x1000 on {storage}: {ratio:.2f} x the 1,000/s limit"
                + (f" (goal >= 0.9: {mark})" if storage == "memory" else " (reported)")
            )
        t = rates(f"sleep threads x8 {storage}")
        if r and t:
            goals.append(
                f"asyncio x1000 / threads x8 on {storage}: "
                f"{statistics.median(r) / statistics.median(t):.0f} x (sleep(1) jobs)"
            )
    pairs = list(zip(rates("cpu processes x2"), rates("cpu threads x2"), strict=False))
    if pairs:
        ratio = statistics.median(p / t for p, t in pairs)
        goals.append(
            f"cpu: processes {ratio:.2f} x threads (goal >= 1.8: {'met' if ratio >= 1.8 else 'MISS'})"
        )
    machine = list(zip(rates("cpu pool x2"), rates("cpu threads x2"), strict=False))
    if machine:
        ratio = statistics.median(p / t for p, t in machine)
        goals.append(f"cpu: a bare process pool {ratio:.2f} x threads (this machine's ceiling now)")
    ab = list(zip(rates("noop threads x8"), rates("noop threads x8 (baseline)"), strict=False))
    if ab:
        ratio = statistics.median(a / b for a, b in ab)
        goals.append(f"noop threads drain: {ratio:.2f} x the baseline (goal >= 1.0 within noise)")
    print("\ngoals:")
    for goal in goals:
        print(f"  {goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
