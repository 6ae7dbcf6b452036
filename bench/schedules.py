"""``python -m bench.schedules``: what holding many schedules costs a worker's scheduler.

10,000 schedules of ``every = "1m"`` held by 3 worker processes on one store
(filesystem by default; ``--postgres DSN`` for PostgreSQL). Each process runs
only the scheduler (the ticks go to a queue nobody works), so its CPU is the
scheduler's: computing ticks, reading paused flags, enqueueing, recording
progress. Reported per process: scheduler CPU as a share of one core, the
enqueue round trips (``add`` calls) per tick batch, jobs per round trip; and
the number of tick jobs stored (one per schedule per minute boundary: the
three processes' duplicates were dropped by the store).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import Any

QUEUE = "bench-ticks"


def _worker(index: int, settings: dict[str, Any], n: int, seconds: float, out: Any) -> None:
    from oddjob_core import Oddjob
    from oddjob_core.testing.targets import noop

    app = Oddjob(**settings)
    start_cpu = time.process_time()
    for i in range(n):
        app.schedule(f"s{i:05d}", noop, every="1m", queue=QUEUE)
    scheduler = app.schedules.scheduler()
    define_cpu = time.process_time() - start_cpu
    store = app.storage
    adds: list[int] = []
    real_add = store.add

    def counting_add(jobs: Sequence[Any]) -> None:
        adds.append(len(jobs))
        real_add(jobs)

    store.add = counting_add  # type: ignore[method-assign]
    batches = 0
    cpu = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before, calls = time.process_time(), len(adds)
        wait = scheduler.run_pass()
        cpu += time.process_time() - before
        if len(adds) > calls:
            batches += 1
        time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
    out.put(
        {
            "worker": index,
            "define_cpu": define_cpu,
            "cpu": cpu,
            "batches": batches,
            "adds": len(adds),
            "jobs": sum(adds),
        }
    )
    app.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=125.0, help="at least two minute ticks")
    parser.add_argument("--postgres", metavar="DSN", help="use PostgreSQL (a fresh schema)")
    args = parser.parse_args(argv)
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
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(i, settings, args.schedules, args.seconds, out))
        for i in range(args.workers)
    ]
    for p in procs:
        p.start()
    results = sorted(
        (out.get(timeout=args.seconds + 600) for _ in procs), key=lambda r: r["worker"]
    )
    for p in procs:
        p.join(60)
    from oddjob_core import Oddjob

    with Oddjob(**settings) as app:
        stored = app.counts(QUEUE).get(QUEUE, {})
    print(
        f"{args.schedules:,} schedules every 1m, {args.workers} worker processes, "
        f"{args.seconds:.0f} s, storage {settings['storage']} (machine shared and loaded)"
    )
    for r in results:
        per_minute = r["cpu"] / args.seconds * 60
        print(
            f"  worker {r['worker']}: scheduler CPU {per_minute:.2f} s per minute "
            f"({r['cpu'] / args.seconds * 100:.2f} % of one core); defining the schedules "
            f"{r['define_cpu']:.1f} s once; {r['batches']} tick batch(es), {r['adds']} add "
            f"round trip(s), {r['jobs'] / max(1, r['adds']):,.0f} jobs per round trip, "
            f"{r['adds'] / max(1, r['batches']):.1f} round trips per batch"
        )
    print(f"  tick jobs stored: {sum(stored.values()):,} (one per schedule per minute boundary)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
