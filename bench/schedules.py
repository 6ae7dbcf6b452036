"""``python -m bench.schedules``: what holding many schedules costs a worker process.

10,000 schedules of ``every = "1m"`` held by 3 worker processes on one store
(filesystem by default; ``--postgres DSN`` for PostgreSQL). The ticks go to a
queue nobody works. Two measurements, both over whole minutes that start 10 s
after a minute boundary (so each window holds the same number of tick batches):

- ``scheduler`` (default): each process runs only the scheduler's passes.
  Reported per process: the scheduler's CPU per minute, split into the store's
  ``add`` (writing the jobs: on the filesystem store that is this process's
  own disk work, on PostgreSQL mostly the server's) and the rest (working out
  ticks, building jobs, reading paused flags, recording progress); the tick
  batches, ``add`` round trips per batch and jobs per round trip.
- ``--processes``: whole ``run_worker`` processes (threads executor, an idle
  queue) without and then with the schedules, side by side: the process CPU
  of each (every thread), so the difference is what holding the schedules costs.

Then the number of tick jobs stored (one per schedule per minute boundary: the
other processes' re-adds were no-ops).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

QUEUE = "bench-ticks"
IDLE = "bench-idle"


def _window_start() -> float:
    """Wall-clock seconds of the next ``:10`` past a minute (at least 5 s from now)."""
    now = time.time()
    start = (now // 60) * 60 + 10
    while start < now + 5:
        start += 60
    return start


def _app(settings: dict[str, Any], n: int) -> Any:
    from oddjob_core import Oddjob
    from oddjob_core.testing.targets import noop

    app = Oddjob(**settings)
    for i in range(n):
        app.schedule(f"s{i:05d}", noop, every="1m", queue=QUEUE)
    return app


def _scheduler_only(index: int, settings: dict[str, Any], n: int, minutes: int, out: Any) -> None:
    app = _app(settings, n)
    scheduler = app.schedules.scheduler()
    store = app.storage
    adds: list[tuple[int, float]] = []
    real_add = store.add

    def timed_add(jobs: Sequence[Any]) -> None:
        before = time.process_time()
        real_add(jobs)
        adds.append((len(jobs), time.process_time() - before))

    store.add = timed_add
    start = _window_start()
    while time.time() < start:  # the first pass (reading progress) happens before the window
        time.sleep(min(scheduler.run_pass(), max(0.0, start - time.time())))
    adds.clear()
    batches, cpu = 0, 0.0
    end = start + minutes * 60
    while time.time() < end:
        before, calls = time.process_time(), len(adds)
        wait = scheduler.run_pass()
        cpu += time.process_time() - before
        batches += len(adds) > calls
        time.sleep(min(wait, max(0.0, end - time.time())))
    add_cpu = sum(c for _, c in adds)
    out.put(
        {
            "worker": index,
            "cpu": cpu,
            "add_cpu": add_cpu,
            "batches": batches,
            "adds": len(adds),
            "jobs": sum(j for j, _ in adds),
        }
    )
    app.close()


def _whole_process(
    index: int, settings: dict[str, Any], n: int, minutes: int, with_schedules: bool, out: Any
) -> None:
    app = _app(settings, n)
    start = _window_start()

    def measure() -> None:
        time.sleep(max(0.0, start - time.time()))
        before = time.process_time()
        time.sleep(minutes * 60)
        out.put({"worker": index, "cpu": time.process_time() - before})
        out.close()
        out.join_thread()  # the result is sent before the process ends
        os._exit(0)  # the worker loop has no stop call from another thread

    threading.Thread(target=measure, daemon=True).start()
    app.run_worker([IDLE], workers=2, handle_signals=False, schedules=with_schedules)


def _run(ctx: Any, target: Any, args: argparse.Namespace, extra: tuple[Any, ...]) -> list[Any]:
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=target, args=(i, *extra[:1], args.schedules, args.minutes, *extra[1:], out)
        )
        for i in range(args.workers)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=args.minutes * 60 + 900) for _ in procs]
    for p in procs:
        p.join(60)
    return sorted(results, key=lambda r: r["worker"])


def _stored(settings: dict[str, Any]) -> int:
    """The tick jobs stored; then the store is removed (a PostgreSQL schema is dropped)."""
    from oddjob_core import Oddjob

    with Oddjob(**settings) as app:
        stored = sum(app.counts(QUEUE).get(QUEUE, {}).values())
    if settings["storage"] == "postgres":
        import psycopg

        options = settings["postgres"]
        with psycopg.connect(options["dsn"], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{options["schema"]}" CASCADE')
    else:
        shutil.rmtree(settings["filesystem"]["path"], ignore_errors=True)
    return stored


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.postgres:
        schema = f"bench_sched_{uuid.uuid4().hex[:8]}"
        settings: dict[str, Any] = {
            "storage": "postgres",
            "postgres": {"dsn": args.postgres, "schema": schema},
        }
    else:
        folder = tempfile.mkdtemp(prefix="bench-schedules-")
        settings = {"storage": "filesystem", "filesystem": {"path": folder, "fsync": False}}
    settings["allowed_prefixes"] = ["oddjob_core.testing"]
    return settings


def _share(cpu: float, minutes: int) -> str:
    return f"{cpu / minutes:.2f} s/min ({cpu / (minutes * 60) * 100:.2f} % of one core)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--minutes", type=int, default=2, help="whole minutes measured")
    parser.add_argument("--postgres", metavar="DSN", help="use PostgreSQL (a fresh schema)")
    parser.add_argument(
        "--processes", action="store_true", help="whole worker processes, without and with"
    )
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    print(
        f"{args.schedules:,} schedules every 1m, {args.workers} worker processes, "
        f"{args.minutes} min measured, load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores"
    )
    if args.processes:
        medians = {}
        for with_schedules in (False, True):
            settings = _settings(args)
            results = _run(ctx, _whole_process, args, (settings, with_schedules))
            label = "with" if with_schedules else "without"
            medians[label] = statistics.median(r["cpu"] for r in results)
            for r in results:
                print(
                    f"  {label} schedules, worker {r['worker']}: process CPU {_share(r['cpu'], args.minutes)}"
                )
            stored = _stored(settings)
            if with_schedules:
                print(f"  tick jobs stored: {stored:,}")
        extra = medians["with"] - medians["without"]
        print(
            f"  median process CPU: without {_share(medians['without'], args.minutes)}, "
            f"with {_share(medians['with'], args.minutes)}; holding the schedules costs "
            f"{_share(extra, args.minutes)}"
        )
        return 0
    settings = _settings(args)
    print(f"  storage {settings['storage']}")
    results = _run(ctx, _scheduler_only, args, (settings,))
    for r in results:
        print(
            f"  worker {r['worker']}: scheduler CPU {_share(r['cpu'], args.minutes)}, of which "
            f"the store's add {_share(r['add_cpu'], args.minutes)} and the rest "
            f"{_share(r['cpu'] - r['add_cpu'], args.minutes)}; {r['batches']} tick batch(es), "
            f"{r['adds']} add round trip(s), {r['jobs'] / max(1, r['adds']):,.0f} jobs per "
            f"round trip, {r['adds'] / max(1, r['batches']):.1f} round trips per batch"
        )
    print(f"  tick jobs stored: {_stored(settings):,} (one per schedule per minute boundary)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
