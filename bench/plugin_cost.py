"""``python -m bench --plugins``: what installed plugins cost the engine, A/B in one run.

Each case runs in a fresh process: the memory store, the threads executor (8
workers), the same no-op job as the main bench (``bench.jobs.noop``):

- ``bare``: no entry point loaded (the core's memory store and ``threads`` only);
- ``observability``: ``bare`` plus oddjob-prometheus (counting every attempt)
  and oddjob-otel (no SDK): the two plugins of issue #17, nothing else;
- ``installed``: every installed plugin loaded, as a user's worker does
  (oddjob-prometheus counting every attempt, oddjob-otel with no SDK, ...);
- ``traced`` (``--traced``): ``installed`` plus an OpenTelemetry SDK recording
  every span (exporting none): what tracing itself costs.

A case enqueues ``--single`` jobs one by one (timed: the producer-side hooks),
the rest in batches, then drains them all in a burst run, timed in the
process itself: the rate from the first to the last execution (each job notes
``perf_counter``; a burst run itself ends on a 0.1 s tick, too coarse for a
0.5 s drain) and the process's CPU time over the run (``process_time``: every
thread, a nanosecond clock, not /proc's 10 ms ticks). Rounds alternate the order
(A B, B A, ...), so neither case always runs first on a warming or cooling
machine; ratios are medians of per-round ratios (paired runs cancel much of a
shared machine's drift). Read CPU per job beside the rate: on a shared 2-core
machine the rate moves with other people's load, the CPU a job costs much less.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import child

HERE = Path(__file__).resolve().parent
CASES = ("bare", "observability", "installed")
GOAL = 0.95  # issue #17: the engine with the plugins installed drains >= 0.95 x without


def bare_registry(*extra: tuple[str, object]) -> Any:
    """A registry with no entry point: the core's memory store, the threads executor, ``extra``."""
    import oddjob_threads.plugin

    from oddjob_core.memory import plugin as memory_plugin
    from oddjob_core.plugins import PluginRegistry

    built_in = [("memory", memory_plugin), ("threads", oddjob_threads.plugin)]
    return PluginRegistry(entry_points=False, extra=[*built_in, *extra])


def registry_for(case: str) -> Any:
    """The registry a case runs with (None: every installed plugin, as ``Oddjob()`` loads)."""
    if case == "bare":
        return bare_registry()
    if case == "observability":
        import oddjob_otel.plugin
        import oddjob_prometheus.plugin

        return bare_registry(("prometheus", oddjob_prometheus.plugin), ("otel", oddjob_otel.plugin))
    if case == "traced":  # an SDK that records every span (and exports none)
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())
    return None


class _GcClock:
    """Time spent in the garbage collector while in the block, and collections per generation.

    A process that imports more (plugins and their libraries) has more objects
    for each full collection to walk: part of what installing plugins costs.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self.objects = 0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def __enter__(self) -> _GcClock:
        self.objects = len(gc.get_objects())
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def run_case(case: str, n: int, single: int, workers: int) -> dict[str, Any]:
    """In the case's own process: enqueue (single timed), then time a burst drain."""
    counter = Path(tempfile.mkdtemp(prefix="bench-plugins-")) / "counter"
    os.environ["BENCH_COUNTER"] = str(counter)  # before bench.jobs opens it
    from oddjob_core import Oddjob, call

    from .jobs import RECORD, TIMES
    from .jobs import noop_timed as noop

    app = Oddjob(storage="memory", allowed_prefixes=["bench"], registry=registry_for(case))
    plugins = sorted(p.name for p in app.registry.plugins if not p.error)
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(single):
        app.enqueue(noop, i, "x")
    w1, c1 = time.perf_counter(), time.process_time()
    for start in range(single, n, 1000):
        app.enqueue_many([call(noop, i, "x") for i in range(start, min(n, start + 1000))])
    gc.collect()
    c2 = time.process_time()
    with _GcClock() as gc_clock:
        app.run_worker(workers=workers, burst=True, handle_signals=False, schedules=False)
    c3 = time.process_time()
    first, last = TIMES
    executed = counter.stat().st_size // RECORD.size
    app.close()
    counter.unlink()
    counter.parent.rmdir()
    if executed != n:
        raise SystemExit(f"{case}: {executed} executions of {n} jobs")
    return {
        "case": case,
        "plugins": plugins,
        "enqueue_us": (w1 - w0) / single * 1e6 if single else None,
        "enqueue_cpu_us": (c1 - c0) / single * 1e6 if single else None,
        "drain": (n - 1) / (last - first),
        "drain_cpu_us": (c3 - c2) / n * 1e6,
        "gc_us": gc_clock.seconds / n * 1e6,
        "gc_collections": gc_clock.collections,
        "heap_objects": gc_clock.objects,
        "load": os.getloadavg()[0],
    }


def _spawn(case: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = {"case": case, "n": args.n, "single": args.single, "workers": args.workers}
    pin = ["taskset", "-c", args.cpu] if args.cpu else []
    return {"case": case, **child.run_case("bench.plugin_cost", spec, prefix=pin, timeout=600)}


def _paired(runs: list[dict[str, dict[str, Any]]], key: str, a: str, b: str) -> list[float]:
    """a/b of ``key`` in every round where both ran."""
    return [r[a][key] / r[b][key] for r in runs if key in r.get(a, {}) and key in r.get(b, {})]


def _spread(values: list[float], spec: str) -> str:
    if not values:
        return "-"
    med = spec.format(statistics.median(values))
    return (
        med
        if len(values) == 1
        else f"{med} ({spec.format(min(values))}–{spec.format(max(values))})"
    )


def report(runs: list[dict[str, dict[str, Any]]], cases: list[str]) -> tuple[str, float | None]:
    """Medians per case and the paired ratios against ``bare``; the drain ratio for the goal."""
    lines = ["medians (min–max) over the rounds:"]
    for case in cases:
        ok = [r[case] for r in runs if "drain" in r.get(case, {})]

        def col(key: str, ok: list[dict[str, Any]] = ok) -> list[float]:
            return [x[key] for x in ok if x.get(key) is not None]

        lines.append(
            f"  {case:<13} drain {_spread(col('drain'), '{:,.0f}')}/s, "
            f"CPU {_spread(col('drain_cpu_us'), '{:.1f}')} us/job; "
            f"enqueue one by one {_spread(col('enqueue_us'), '{:.1f}')} us/job, "
            f"CPU {_spread(col('enqueue_cpu_us'), '{:.1f}')} us/job"
        )
    goal_ratio = None
    lines.append("per-round ratios against bare (median (min–max); > 1 is faster):")
    for case in cases:
        if case == "bare":
            continue
        drain = _paired(runs, "drain", case, "bare")
        cpu = _paired(runs, "drain_cpu_us", "bare", case)
        enq = _paired(runs, "enqueue_cpu_us", "bare", case)
        lines.append(
            f"  {case} / bare: drain {_spread(drain, '{:.3f}')} x, "
            f"by drain CPU per job {_spread(cpu, '{:.3f}')} x, "
            f"by enqueue CPU per job {_spread(enq, '{:.3f}')} x"
        )
        if case == "observability" and drain:
            goal_ratio = statistics.median(drain)
    return "\n".join(lines), goal_ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nox -s bench -- --plugins")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=8, help="rounds (default 8; --quick 2)")
    parser.add_argument("--n", type=int, default=20_000, help="jobs drained per run")
    parser.add_argument("--single", type=int, default=2_000, help="jobs enqueued one by one")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--cpu", help="run every case on this CPU only (taskset -c): no GIL ping-pong across cores"
    )
    parser.add_argument("--traced", action="store_true", help="also run with an OTel SDK")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5,000 jobs")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.case:
        spec = json.loads(args.case)
        print(json.dumps(run_case(spec["case"], spec["n"], spec["single"], spec["workers"])))
        return 0
    if args.quick:
        args.runs, args.n = 2, 5_000
    args.single = min(args.single, args.n)
    cases = [*CASES, *(["traced"] if args.traced else [])]
    started = datetime.now(UTC)
    load_start = os.getloadavg()
    head = (
        f"plugins A/B {started:%Y-%m-%d %H:%M} UTC: N={args.n:,} (first {args.single:,} one "
        f"by one), {args.workers} threads, memory store, {args.runs} rounds, order alternating; "
        f"{os.cpu_count()} CPUs, load average at start {'/'.join(f'{x:.1f}' for x in load_start)}"
    )
    print(head, flush=True)
    runs: list[dict[str, dict[str, Any]]] = []
    for k in range(args.runs):
        order = cases if k % 2 == 0 else cases[::-1]
        results: dict[str, dict[str, Any]] = {}
        for case in order:
            r = results[case] = _spawn(case, args)
            shown = (
                f"drain {r['drain']:,.0f}/s, CPU {r['drain_cpu_us']:.1f} us/job; enqueue "
                f"{r['enqueue_us']:.1f} us/job (CPU {r['enqueue_cpu_us']:.1f}); load {r['load']:.1f}"
                if "drain" in r
                else f"FAILED: {r['error']}"
            )
            print(f"  round {k + 1} {case:<13} {shown}", flush=True)
        runs.append(results)
    text, ratio = report(runs, cases)
    load_end = os.getloadavg()
    for case in cases[1:]:
        loaded = [r[case]["plugins"] for r in runs if "plugins" in r.get(case, {})]
        text += f"\n  {case} = {', '.join(loaded[0]) if loaded else '?'}"
    text += f"\nload average at end {'/'.join(f'{x:.1f}' for x in load_end)}"
    if ratio is not None:
        mark = "met " if ratio >= GOAL else "MISS"
        text += (
            f"\ngoal: {mark} engine with oddjob-prometheus + oddjob-otel >= {GOAL} x without "
            f"plugins (median per-round drain ratio): {ratio:.3f} x"
        )
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"plugins-{started:%Y%m%d-%H%M%S}.json"
    summary = {
        "head": head,
        "report": text,
        "runs": runs,
        "args": vars(args) | {"out": str(args.out)},
    }
    path.write_text(json.dumps(summary, indent=1))
    print(f"wrote {path}")
    failed = any("error" in r for rs in runs for r in rs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
