"""How cost grows with the work: ``nox -s bench -- --scale`` (or ``python -m bench.scale``).

Each point drains ``D`` due no-op jobs with one worker process of 8 threads
(or 1, 2, 4 processes), in a store that already holds other jobs: jobs
scheduled far ahead, finished jobs kept, jobs waiting in RabbitMQ's delay
ladder, jobs due in one filesystem hour bucket. Enqueue rate is sampled as a
PostgreSQL store grows. Every execution is checked by index (none lost, none
run twice), as in the main benchmark. Prints a table, writes JSON and a PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import environment, measure, services
from .systems import PY, write_toml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
Point = dict[str, Any]


@contextmanager
def store(backend: str, workdir: Path) -> Iterator[tuple[Path, Callable[[], None]]]:
    """A fresh store of ``backend``: its oddjob.toml and a function that ANALYZEs (PostgreSQL)."""
    tag = f"bench_scale_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    options: dict[str, Any] = {}
    analyze: Callable[[], None] = lambda: None  # noqa: E731
    if backend == "postgres":
        dsn = services.pg_create_database(tag)
        options = {"dsn": dsn}
        analyze = lambda: services.pg_analyze(dsn)  # noqa: E731
    elif backend == "rabbitmq":
        options = {"url": services.amqp_create_vhost(tag)}
    elif backend == "filesystem":
        options = {"path": str(workdir / "store")}
    config = workdir / "oddjob.toml"
    top = {"storage": backend, "allowed_prefixes": ["bench"], "imports": ["bench.jobs"]}
    write_toml(config, top, {backend: options})
    try:
        yield config, analyze
    finally:
        if backend == "postgres":
            services.pg_drop_database(tag)
        elif backend == "rabbitmq":
            services.amqp_delete_vhost(tag)
        shutil.rmtree(workdir / "store", ignore_errors=True)


def fill(config: Path, count: int, *, delay: timedelta | None = None) -> float:
    """Enqueue ``count`` background jobs (indices far above the measured ones); return jobs/s."""
    from oddjob_core import Oddjob, call

    from .jobs import noop

    base = 10**8
    start = time.perf_counter()
    with Oddjob(config) as app:
        enqueuer = app.options(delay=delay) if delay else app
        for first in range(0, count, 5_000):
            chunk = range(base + first, base + min(count, first + 5_000))
            enqueuer.enqueue_many([call(noop, i, "x") for i in chunk])
    return count / max(time.perf_counter() - start, 1e-9)


def finish_all(config: Path) -> None:
    """Mark every stored job succeeded in SQL: the shape of a store that keeps its history."""
    import psycopg

    options = _options(config)
    table = f"{options.get('schema', 'oddjob')}.jobs"
    with psycopg.connect(options["dsn"], autocommit=True) as conn:
        conn.execute(
            f"UPDATE {table} SET state = 'succeeded', finished_at = now(), updated_at = now()"
        )
        conn.execute(f"VACUUM ANALYZE {table}")


def _options(config: Path) -> dict[str, Any]:
    import tomllib

    data = tomllib.loads(config.read_text())
    return dict(data[data["storage"]])


def drain(config: Path, d: int, workdir: Path, processes: int = 1) -> Point:
    """Enqueue ``d`` due jobs, drain them with ``processes`` workers; rate and job-by-job check."""
    from oddjob_core import Oddjob, call

    from .jobs import noop

    counter = workdir / "counter"
    counter.write_bytes(b"")
    os.environ["BENCH_COUNTER"] = str(counter)
    with Oddjob(config) as app:
        for first in range(0, d, 1_000):
            app.enqueue_many([call(noop, i, "x") for i in range(first, min(d, first + 1_000))])
    env = {**os.environ, "BENCH_COUNTER": str(counter)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [
        PY,
        "-m",
        "oddjob_core",
        "--config",
        str(config),
        "worker",
        "--workers",
        "8",
        "--quiet",
    ]
    workers = [
        subprocess.Popen(command, env=env, cwd=workdir, start_new_session=True)
        for _ in range(processes)
    ]
    fd = os.open(counter, os.O_RDONLY)
    try:
        trace = measure.watch_drain(
            fd,
            d,
            lambda: (0.0, None),
            stall_timeout=60,
            deadline=time.monotonic() + 120 + d / 50,
            alive=lambda: all(w.poll() is None for w in workers),
        )
        time.sleep(1.0)  # stray duplicates show up
    finally:
        os.close(fd)
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
    check = measure.validate(counter, d)
    return {
        "drain": trace.rate(1, d),
        "lost": check.lost,
        "duplicates": check.duplicated,
        "unknown": check.unknown,
    }


def run(args: argparse.Namespace) -> list[Point]:
    big, mid, d = args.big, args.big // 10, args.d
    points: list[Point] = []

    def point(series: str, x: int, backend: str, **more: Any) -> Point:
        p = {"series": series, "x": x, "backend": backend, **more}
        points.append(p)
        print(f"  {series:<44} x={x:>9,}  " + "  ".join(
            f"{k} {v:,.0f}" if isinstance(v, float) else f"{k} {v}" for k, v in more.items()
        ), flush=True)  # fmt: skip
        return p

    def one(
        series: str,
        backend: str,
        stored: int,
        prepare: Callable[[Path], object],
        processes: int = 1,
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            workdir = Path(tmp)
            with store(backend, workdir) as (config, analyze):
                prepare(config)
                analyze()
                point(series, stored, backend, **drain(config, d, workdir, processes))

    day = timedelta(days=1)
    if "postgres" in args.backends:
        for n in (0, mid, big):
            one("postgres: drain, N jobs scheduled a day ahead", "postgres", n,
                lambda c, n=n: fill(c, n, delay=day))  # fmt: skip
        for n in (0, big):
            one("postgres: drain, N finished jobs kept", "postgres", n,
                lambda c, n=n: n and (fill(c, n, delay=day), finish_all(c)))  # fmt: skip
        for procs in (1, 2, 4):
            one("postgres: drain, worker processes", "postgres", procs,
                lambda c: None, processes=procs)  # fmt: skip
        with (
            tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp,
            store("postgres", Path(tmp)) as (config, _),
        ):
            step = max(big // 10, 1)
            for stored in range(0, big, step):
                point("postgres: batch enqueue rate as the store grows", stored + step, "postgres",
                      enqueue=fill(config, step))  # fmt: skip
    if "rabbitmq" in args.backends:
        for n in (0, args.ladder):
            one("rabbitmq: drain, N jobs in the delay ladder", "rabbitmq", n,
                lambda c, n=n: fill(c, n, delay=day))  # fmt: skip
    if "filesystem" in args.backends:
        for n in (0, args.ladder):
            one("filesystem: drain, N jobs due in one hour bucket", "filesystem", n,
                lambda c, n=n: fill(c, n, delay=timedelta(minutes=30)))  # fmt: skip
    return points


def table(points: list[Point]) -> str:
    rows = ["| series | x (stored jobs / processes) | drain/s | enqueue/s | lost | dup |",
            "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for p in points:
        rows.append(
            f"| {p['series']} | {p['x']:,} | {p.get('drain') or 0:,.0f} | {p.get('enqueue') or 0:,.0f} "
            f"| {p.get('lost', '-')} | {p.get('duplicates', '-')} |"
        )
    return "\n".join(rows)


def flatness(points: list[Point]) -> list[str]:
    """Drain at the largest store over drain at the empty one, per drain series (goal: >= 0.9)."""
    out = []
    for series in dict.fromkeys(p["series"] for p in points):
        ps = [p for p in points if p["series"] == series and p.get("drain")]
        if len(ps) >= 2 and "processes" not in series:
            ratio = ps[-1]["drain"] / ps[0]["drain"]
            out.append(f"  {'met ' if ratio >= 0.9 else 'MISS'}  {series}: {ps[-1]['x']:,} stored "
                       f"drains at {ratio:.2f} x the empty store")  # fmt: skip
    return out


def chart(points: list[Point], path: Path, caption: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series = list(dict.fromkeys(p["series"] for p in points))
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    stored = [s for s in series if "N " in s]
    for s in stored:
        ps = [p for p in points if p["series"] == s]
        axes[0].plot([p["x"] for p in ps], [p.get("drain") or 0 for p in ps], marker="o", label=s)
    axes[0].set(title="drain vs jobs already stored", xlabel="stored jobs", ylabel="jobs/s")
    for s in [s for s in series if "processes" in s]:
        ps = [p for p in points if p["series"] == s]
        axes[1].plot([p["x"] for p in ps], [p.get("drain") or 0 for p in ps], marker="o", label=s)
    axes[1].set(
        title="drain vs worker processes (8 threads each)", xlabel="processes", ylabel="jobs/s"
    )
    for s in [s for s in series if "enqueue" in s]:
        ps = [p for p in points if p["series"] == s]
        axes[2].plot([p["x"] for p in ps], [p.get("enqueue") or 0 for p in ps], marker="o", label=s)
    axes[2].set(title="batch enqueue vs store size", xlabel="stored jobs", ylabel="jobs/s")
    for ax in axes:
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.text(0.5, 0.01, caption, ha="center", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument(
        "--big", type=int, default=1_000_000, help="largest store (default 1,000,000)"
    )
    parser.add_argument(
        "--ladder", type=int, default=100_000, help="jobs in the delay ladder / hour bucket"
    )
    parser.add_argument("--d", type=int, default=5_000, help="due jobs drained per point")
    parser.add_argument("--backends", default="postgres,rabbitmq,filesystem")
    parser.add_argument(
        "--quick", action="store_true", help="100k largest store, 10k ladder, 2k drained"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.big, args.ladder, args.d = 100_000, 10_000, 2_000
    started = datetime.now(UTC)
    env = environment.collect()
    print(f"oddjob scale bench {started:%Y-%m-%d %H:%M} UTC\n{environment.describe(env)}\n")
    points = run(args)
    load_after = list(os.getloadavg())
    report = "\n".join([
        f"scale: drain of {args.d:,} due jobs (1 worker process x 8 threads unless stated) beside "
        "jobs already stored; every job checked by index",
        environment.describe(env, load_after), "", table(points), "", *flatness(points),
    ])  # fmt: skip
    print("\n" + report)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = f"{started:%Y%m%d-%H%M%S}"
    (args.out / f"scale-{stamp}.json").write_text(
        json.dumps(
            {
                "environment": env,
                "args": {k: str(v) for k, v in vars(args).items()},
                "points": points,
                "report": report,
            },
            indent=1,
        )
    )
    png = args.out / f"scale-{stamp}.png"
    drawn = chart(points, png, environment.describe(env, load_after).replace("\n", "; "))
    print(f"\nwrote {args.out / f'scale-{stamp}.json'}" + (f" and {png}" if drawn else ""))
    bad = [p for p in points if p.get("lost") or p.get("duplicates") or p.get("unknown")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
