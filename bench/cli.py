"""``python -m bench``: run every system N times interleaved, then report medians and ratios."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import environment, measure
from .systems import ALL, by_name

HERE = Path(__file__).resolve().parent

#: (metric key, column title, format, higher is better)
METRICS: list[tuple[str, str, str, bool]] = [
    ("enqueue_single", "enq 1/s", "{:,.0f}", True),
    ("enqueue_p50_ms", "enq p50 ms", "{:.2f}", False),
    ("enqueue_p99_ms", "enq p99 ms", "{:.2f}", False),
    ("enqueue_concurrent", "enq 16 thr/s", "{:,.0f}", True),
    ("enqueue_batch", "enq batch/s", "{:,.0f}", True),
    ("drain", "drain/s", "{:,.0f}", True),
    ("drain_first_quarter", "1st q/s", "{:,.0f}", True),
    ("drain_last_quarter", "last q/s", "{:,.0f}", True),
    ("client_cpu_per_1k", "cli CPU s/1k", "{:.3f}", False),
    ("server_cpu_per_1k", "srv CPU s/1k", "{:.3f}", False),
    ("db_transactions_per_job", "db tx/job", "{:.2f}", False),
    ("latency_p50_ms", "p50 ms", "{:.1f}", False),
    ("latency_p99_ms", "p99 ms", "{:.1f}", False),
    ("lost", "lost", "{:.0f}", False),
    ("duplicates", "dup", "{:.0f}", False),
]

#: goals from the issues: (oddjob system, metric, peer or None, factor, wording)
GOALS: list[tuple[str, str, str | None, float, str]] = [
    ("oddjob-memory", "drain", None, 15_000, "engine alone drains >= 15,000 jobs/s"),
    ("oddjob-memory", "drain", "oddjob-memory-bare", 0.95,
     "engine with oddjob-prometheus + oddjob-otel installed >= 0.95 x without plugins"),
    ("oddjob-filesystem", "drain", "huey*", 1.0, "filesystem drains faster than Huey at its best thread count"),
    ("oddjob-filesystem", "enqueue_single", "huey", 1.0, "filesystem single enqueue >= 1.0 x Huey"),
    ("oddjob-rabbitmq", "drain", "dramatiq", 1.5, "rabbitmq drain >= 1.5 x dramatiq"),
    ("oddjob-rabbitmq", "enqueue_single", "dramatiq", 1.0, "rabbitmq single enqueue >= 1.0 x dramatiq"),
    ("oddjob-rabbitmq", "enqueue_batch", "aio-pika", 0.9, "rabbitmq batch enqueue >= 0.9 x raw aio-pika"),
    ("oddjob-postgres", "drain", "pgqueuer", 2.0, "postgres drain >= 2 x pgqueuer"),
    ("oddjob-postgres", "drain", "procrastinate", 10.0, "postgres drain >= 10 x procrastinate"),
    ("oddjob-postgres", "enqueue_batch", "raw-skip-locked", 0.8,
     "postgres batch enqueue >= 0.8 x raw batch insert of an equivalent job row"),
    ("oddjob-postgres", "enqueue_batch", "pgqueuer", 1.5, "postgres batch enqueue >= 1.5 x pgqueuer"),
]  # fmt: skip


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def run_one(name: str, args: argparse.Namespace, tmp: Path, timeout: float) -> dict[str, Any]:
    out = tmp / f"{name}-{time.monotonic_ns()}.json"
    cmd = [
        sys.executable, "-m", "bench.driver", name, "--out", str(out),
        "--n", str(args.n), "--single", str(args.single), "--samples", str(args.samples),
        "--concurrent", str(args.concurrent),
        "--latency-budget", str(args.latency_budget), "--settle", str(args.settle),
        "--stall-timeout", str(args.stall_timeout), "--drain-timeout", str(timeout),
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        proc.wait(timeout + args.latency_budget + 120)
    except subprocess.TimeoutExpired:
        # kill the driver's group; its worker runs in a group of its own: find it by parent
        kids = [p.pid for p in measure.processes().values() if p.ppid == proc.pid]
        for pgid in [proc.pid, *kids]:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        proc.wait()
        return {"system": name, "error": "timed out (driver and worker killed)"}
    if not out.exists():
        return {"system": name, "error": f"driver exited {proc.returncode} without a result"}
    return dict(json.loads(out.read_text()))


def line(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return f"  {r['system']:<18} skipped: {r['skipped']}"
    if "error" in r:
        return f"  {r['system']:<18} FAILED: {r['error']}"
    return (
        f"  {r['system']:<18} enq {fmt(r.get('enqueue_single'), '{:,.0f}')}/s"
        f" batch {fmt(r.get('enqueue_batch'), '{:,.0f}')}/s"
        f"  drain {fmt(r.get('drain'), '{:,.0f}')}/s"
        f"  cpu {fmt(r.get('client_cpu_per_1k'), '{:.3f}')}+{fmt(r.get('server_cpu_per_1k'), '{:.3f}')} s/1k"
        f"  p50 {fmt(r.get('latency_p50_ms'), '{:.1f}')} ms  lost {r.get('lost')} dup {r.get('duplicates')}"
    )


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        ok = [r for r in results if "error" not in r and "skipped" not in r]
        entry: dict[str, Any] = {"runs": len(ok), "failed": sum("error" in r for r in results)}
        if results and "skipped" in results[0]:
            entry["skipped"] = results[0]["skipped"]
        for key, *_ in METRICS:
            values = [r[key] for r in ok if r.get(key) is not None]
            if values:
                entry[key] = {
                    "median": measure.median(values),
                    "min": min(values),
                    "max": max(values),
                }
        if results:
            entry["family"] = results[0].get("family")
            entry["oddjob"] = results[0].get("oddjob")
        summary[name] = entry
    return summary


def peer_values(runs: dict[str, list[dict[str, Any]]], peer: str, key: str) -> list[float | None]:
    """The peer's value in each run; ``huey*`` is the best of huey and its variants in that run."""
    names = [peer]
    if peer.endswith("*"):
        base = peer[:-1]
        names = [n for n in runs if n == base or n.startswith(base + "-")]
    out: list[float | None] = []
    for k in range(max((len(runs.get(n, [])) for n in names), default=0)):
        values = [
            runs[n][k][key]
            for n in names
            if k < len(runs.get(n, [])) and "error" not in runs[n][k] and runs[n][k].get(key)
        ]
        out.append(max(values) if values else None)
    return out


def paired_ratio(
    runs: dict[str, list[dict[str, Any]]], a: str, b: str, key: str
) -> tuple[float, float, float] | None:
    """Median, min, max of a/b over runs with the same index (interleaved, so paired)."""
    ratios = []
    for va, vb in zip(peer_values(runs, a, key), peer_values(runs, b, key), strict=False):
        if va and vb:
            ratios.append(va / vb)
    if not ratios:
        return None
    return measure.median(ratios) or 0.0, min(ratios), max(ratios)


def table(summary: dict[str, dict[str, Any]]) -> str:
    head = ["system", "runs", *(title for _, title, _, _ in METRICS)]
    rows = [head]
    for name, entry in summary.items():
        if "skipped" in entry:
            continue
        row = [
            name,
            str(entry["runs"]) + (f" ({entry['failed']} failed)" if entry["failed"] else ""),
        ]
        for key, _, spec, _ in METRICS:
            m = entry.get(key)
            if m is None:
                row.append("-")
            elif m["min"] == m["max"]:
                row.append(fmt(m["median"], spec))
            else:
                row.append(
                    f"{fmt(m['median'], spec)} ({fmt(m['min'], spec)}–{fmt(m['max'], spec)})"
                )
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = []
    for k, r in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if k == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def ratios_text(runs: dict[str, list[dict[str, Any]]], summary: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, entry in summary.items():
        if not entry.get("oddjob") or "skipped" in entry or entry["family"] == "memory":
            continue
        peers = [
            p
            for p, e in summary.items()
            if e.get("family") == entry["family"] and not e.get("oddjob") and "skipped" not in e
        ]
        if sum(p == "huey" or p.startswith("huey-") for p in peers) > 1:
            peers.append("huey*")  # the best Huey of each run
        for peer in peers:
            parts = []
            for key, title in (
                ("drain", "drain"),
                ("enqueue_single", "enq 1"),
                ("enqueue_concurrent", "enq 16 threads"),
                ("enqueue_batch", "enq batch"),
                ("client_cpu_per_1k", "client CPU"),
            ):
                r = paired_ratio(runs, name, peer, key)
                if r:
                    parts.append(f"{title} {r[0]:.2f}x ({r[1]:.2f}–{r[2]:.2f})")
            shown = "best of huey at 1, 2, 4, 8 threads" if peer == "huey*" else peer
            lines.append(f"  {name} / {shown}: " + ", ".join(parts or ["no paired runs"]))
    return "\n".join(lines) or "  (no oddjob backend with a peer ran)"


def goals_text(runs: dict[str, list[dict[str, Any]]], summary: dict[str, dict[str, Any]]) -> str:
    lines = []
    for system, key, peer, factor, words in GOALS:
        if system not in summary or "skipped" in summary[system]:
            continue
        if peer is None:
            m = summary[system].get(key)
            if m:
                ok = m["median"] >= factor
                lines.append(f"  {'met ' if ok else 'MISS'}  {words}: {m['median']:,.0f}")
            continue
        r = paired_ratio(runs, system, peer, key)
        if r:
            lines.append(f"  {'met ' if r[0] >= factor else 'MISS'}  {words}: {r[0]:.2f}x")
    for system in ("oddjob-rabbitmq", "oddjob-filesystem", "oddjob-postgres"):
        shared = [
            r["enqueue_concurrent"] / r["enqueue_single"]
            for r in runs.get(system, [])
            if r.get("enqueue_concurrent") and r.get("enqueue_single")
        ]
        if shared:
            kept = statistics.median(shared)
            goal = 3.0 if system != "oddjob-postgres" else 1.0
            lines.append(
                f"  {'met ' if kept >= goal else 'MISS'}  {system}: 16 threads enqueuing one by one "
                f">= {goal:.0f} x one thread: {kept:.2f}x ({min(shared):.2f}–{max(shared):.2f})"
            )
    pg = summary.get("oddjob-postgres", {})
    if pg.get("latency_p50_ms"):
        p50 = pg["latency_p50_ms"]["median"]
        lines.append(
            f"  {'met ' if p50 < 10 else 'MISS'}  postgres idle pickup p50 < 10 ms: {p50:.1f} ms"
        )
    # last over first quarter within each run (a host slowing down mid-run moves both
    # medians apart even when no single drain fell), then the median of those ratios
    falls = [
        r["drain_last_quarter"] / r["drain_first_quarter"]
        for r in runs.get("oddjob-postgres", [])
        if r.get("drain_first_quarter") and r.get("drain_last_quarter")
    ]
    if falls:
        a, b = pg["drain_first_quarter"]["median"], pg["drain_last_quarter"]["median"]
        kept = statistics.median(falls)
        lines.append(
            f"  {'met ' if kept >= 0.9 else 'MISS'}  postgres drain does not fall as finished "
            f"rows pile up: last / first quarter {kept:.2f} per run "
            f"({min(falls):.2f}–{max(falls):.2f}); medians {a:,.0f}/s and {b:,.0f}/s"
        )
    return "\n".join(lines) or "  (none applicable)"


FAMILIES = ("memory", "embedded", "rabbitmq", "postgres", "sqlserver")
CHART_METRICS = (
    ("drain", "drain, jobs/s"),
    ("enqueue_single", "enqueue one by one, jobs/s"),
    ("enqueue_batch", "enqueue in batches, jobs/s"),
)


def chart(
    summary: dict[str, dict[str, Any]],
    runs: dict[str, list[dict[str, Any]]],
    path: Path,
    title: str,
    caption: str,
) -> bool:
    """Linear bars per server family and metric, then a row of oddjob/peer ratios with the goals."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    families = [
        f
        for f in FAMILIES
        if any(e.get("family") == f and "skipped" not in e for e in summary.values())
    ]
    if not families:
        return False
    fig, axes = plt.subplots(
        len(CHART_METRICS) + 1, len(families), figsize=(4.6 * len(families), 13), squeeze=False
    )
    for col, family in enumerate(families):
        names = [n for n, e in summary.items() if e.get("family") == family and "skipped" not in e]
        colors = ["tab:orange" if summary[n].get("oddjob") else "tab:gray" for n in names]
        for row, (key, label) in enumerate(CHART_METRICS):
            ax = axes[row][col]
            meds = [summary[n][key]["median"] if summary[n].get(key) else 0.0 for n in names]
            low = [
                meds[i] - summary[n][key]["min"] if summary[n].get(key) else 0
                for i, n in enumerate(names)
            ]
            high = [
                summary[n][key]["max"] - meds[i] if summary[n].get(key) else 0
                for i, n in enumerate(names)
            ]
            ax.bar(names, meds, color=colors, yerr=[low, high], capsize=3)
            ax.set_ylim(bottom=0)
            ax.set_title(f"{family}: {label}", fontsize=9)
            ax.tick_params(axis="x", labelrotation=35, labelsize=7)
            for x, v in enumerate(meds):
                ax.annotate(
                    f"{v:,.0f}" if v else "n/a", (x, v), ha="center", va="bottom", fontsize=7
                )
        ax = axes[-1][col]
        bars, values, goal_lines = [], [], []
        for system, key, peer, factor, _words in GOALS:
            if peer is None or summary.get(system, {}).get("family") != family:
                continue
            r = paired_ratio(runs, system, peer, key)
            short = key.replace("enqueue_", "enq ").replace("single", "1")
            bars.append(f"{system.removeprefix('oddjob-')} / {peer}\n{short}")
            values.append(r[0] if r else 0.0)
            goal_lines.append(factor)
        if bars:
            ax.bar(
                bars,
                values,
                color=[
                    "tab:green" if v >= g else "tab:red"
                    for v, g in zip(values, goal_lines, strict=True)
                ],
            )
            for x, (v, g) in enumerate(zip(values, goal_lines, strict=True)):
                ax.hlines(g, x - 0.4, x + 0.4, colors="black", linestyles="dashed")
                ax.annotate(
                    f"{v:.2f}x" if v else "n/a", (x, v), ha="center", va="bottom", fontsize=7
                )
            ax.set_ylim(bottom=0)
        ax.set_title(f"{family}: oddjob / peer (dashed: goal)", fontsize=9)
        ax.tick_params(axis="x", labelsize=6)
    fig.suptitle(title, fontsize=11)
    fig.text(0.5, 0.005, caption, ha="center", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def machine() -> str:
    cpu = "?"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), {platform.platform()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    names = list(by_name())
    parser = argparse.ArgumentParser(
        prog="nox -s bench --",
        description="oddjob side by side with its peers; see bench/README.md",
    )
    parser.add_argument("--n", type=int, help="jobs per run (default 20,000; --quick 1,000)")
    parser.add_argument(
        "--runs", type=int, help="interleaved runs per system (default 5; --quick 1)"
    )
    parser.add_argument(
        "--systems",
        help=f"comma-separated subset (default all): {', '.join(names)}; "
        "a family name (memory, embedded, rabbitmq, postgres, sqlserver) selects its systems",
    )
    parser.add_argument("--quick", action="store_true", help="small N, 1 run: under 2 minutes")
    parser.add_argument("--samples", type=int, help="idle-latency samples (default 200; quick 20)")
    parser.add_argument(
        "--single", type=int, help="jobs enqueued one by one when a batch API exists (default N/4)"
    )
    parser.add_argument(
        "--latency-budget", type=float, help="max seconds of latency sampling per run"
    )
    parser.add_argument(
        "--concurrent",
        type=int,
        help="jobs enqueued by 16 threads at once (default N/4: long enough a phase to time)",
    )
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds to wait for stray duplicates"
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=45.0,
        help="give up a drain after this long without progress",
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results", help="folder for JSON and PNG"
    )
    parser.add_argument("--seed", type=int, help="seed of the run order (default: the start time)")
    args = parser.parse_args(argv)  # fmt: skip

    args.n = args.n or (1_000 if args.quick else 20_000)
    args.runs = args.runs or (1 if args.quick else 5)
    args.samples = args.samples if args.samples is not None else (20 if args.quick else 200)
    args.single = args.single if args.single is not None else max(1, args.n // 4)
    args.concurrent = args.concurrent if args.concurrent is not None else max(16, args.n // 4)
    if args.latency_budget is None:
        args.latency_budget = 4.0 if args.quick else 30.0
    if args.quick:
        args.settle = min(args.settle, 1.0)
        args.stall_timeout = min(args.stall_timeout, 20.0)

    families = {cls().family for cls in ALL}
    if args.systems:
        chosen: list[str] = []
        for item in (s.strip() for s in args.systems.split(",") if s.strip()):
            if item in families:
                chosen += [n for n in names if by_name()[n]().family == item]
            elif item in names:
                chosen.append(item)
            else:
                parser.error(f"unknown system '{item}'; choose from {', '.join(names)} or a family")
        selected = list(dict.fromkeys(chosen))
    else:
        selected = names
    timeout = 60 + args.n / 100

    started = datetime.now(UTC)
    env = environment.collect()
    seed = args.seed if args.seed is not None else int(started.timestamp())
    rng = random.Random(seed)
    print(f"oddjob bench {started:%Y-%m-%d %H:%M} UTC")
    print(environment.describe(env))
    print(f"N={args.n:,} runs={args.runs} order: shuffled per run (seed {seed})")
    print(f"systems: {', '.join(selected)}\n")
    orders: list[list[str]] = []
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in selected}
    skipped: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmpdir:
        tmp = Path(tmpdir)
        for k in range(args.runs):
            print(f"run {k + 1}/{args.runs}", flush=True)
            order = selected[:]
            rng.shuffle(order)  # no system always follows another's heavy writes
            orders.append(order)
            for name in order:
                if name in skipped:
                    continue
                result = run_one(name, args, tmp, timeout)
                if "skipped" in result:
                    skipped.add(name)
                runs[name].append(result)
                print(line(result), flush=True)
                for key in ("traceback", "worker_log_tail"):
                    if key in result:
                        print("    " + result[key].strip().replace("\n", "\n    ")[-1500:])

    summary = summarize(runs)
    load_after = list(os.getloadavg())
    text = [
        f"oddjob bench {started:%Y-%m-%d %H:%M} UTC, N={args.n:,}, {args.runs} interleaved run(s), "
        f"order shuffled per run (seed {seed}); every job checked by index (lost / run twice)",
        environment.describe(env, load_after),
        "",
        "medians (min–max) over the runs:",
        table(summary),
        "",
        "oddjob / peer on the same server (median of per-run ratios; for CPU lower is better):",
        ratios_text(runs, summary),
        "",
        "goals from the issues:",
        goals_text(runs, summary),
    ]
    skips = [f"  {n}: {summary[n]['skipped']}" for n in summary if "skipped" in summary[n]]
    if skips:
        text += ["", "skipped:", *skips]
    report = "\n".join(text)
    print("\n" + report)

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = f"{started:%Y%m%d-%H%M%S}"
    json_path = args.out / f"bench-{stamp}.json"
    json_path.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "machine": machine(),
                "environment": {**env, "load_average_end": load_after},
                "seed": seed,
                "orders": orders,
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "runs": runs,
                "summary": summary,
                "report": report,
            },
            indent=1,
        )
    )
    png = args.out / f"bench-{stamp}.png"
    drawn = chart(
        summary,
        runs,
        png,
        f"oddjob bench {started:%Y-%m-%d}, N={args.n:,}, medians (bars: min–max) of {args.runs} "
        "run(s); orange = oddjob",
        environment.describe(env, load_after).replace("\n", "; "),
    )
    print(f"\nwrote {json_path}" + (f" and {png}" if drawn else " (no chart: matplotlib missing)"))
    failed = sum(e["failed"] for e in summary.values())
    return 1 if failed else 0
