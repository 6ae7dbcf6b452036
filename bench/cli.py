"""``python -m bench``: run every system N times interleaved, then report medians and ratios."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import measure
from .systems import ALL, by_name

HERE = Path(__file__).resolve().parent

#: (metric key, column title, format, higher is better)
METRICS: list[tuple[str, str, str, bool]] = [
    ("enqueue_single", "enq 1/s", "{:,.0f}", True),
    ("enqueue_batch", "enq batch/s", "{:,.0f}", True),
    ("drain", "drain/s", "{:,.0f}", True),
    ("drain_first_quarter", "1st q/s", "{:,.0f}", True),
    ("drain_last_quarter", "last q/s", "{:,.0f}", True),
    ("client_cpu_per_1k", "cli CPU s/1k", "{:.3f}", False),
    ("server_cpu_per_1k", "srv CPU s/1k", "{:.3f}", False),
    ("db_transactions_per_job", "db tx/job", "{:.2f}", False),
    ("latency_p50_ms", "p50 ms", "{:.1f}", False),
    ("latency_p99_ms", "p99 ms", "{:.1f}", False),
    ("duplicates", "dup", "{:.0f}", False),
]

#: goals from the issues: (oddjob system, metric, peer or None, factor, wording)
GOALS: list[tuple[str, str, str | None, float, str]] = [
    ("oddjob-memory", "drain", None, 15_000, "engine alone drains >= 15,000 jobs/s"),
    ("oddjob-memory", "drain", "oddjob-memory-bare", 0.95,
     "engine with oddjob-prometheus + oddjob-otel installed >= 0.95 x without plugins"),
    ("oddjob-filesystem", "drain", "huey", 1.0, "filesystem drains faster than huey"),
    ("oddjob-rabbitmq", "drain", "dramatiq", 1.5, "rabbitmq drain >= 1.5 x dramatiq"),
    ("oddjob-rabbitmq", "drain", "aio-pika", 0.8, "rabbitmq drain >= 0.8 x raw aio-pika"),
    ("oddjob-rabbitmq", "enqueue_batch", "aio-pika", 0.9, "rabbitmq batch enqueue >= 0.9 x raw"),
    ("oddjob-postgres", "drain", "pgqueuer", 2.0, "postgres drain >= 2 x pgqueuer"),
    ("oddjob-postgres", "drain", "procrastinate", 10.0, "postgres drain >= 10 x procrastinate"),
    ("oddjob-postgres", "enqueue_batch", "raw-skip-locked", 0.5,
     "postgres batch enqueue >= 0.5 x raw batched insert"),
]  # fmt: skip


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def run_one(name: str, args: argparse.Namespace, tmp: Path, timeout: float) -> dict[str, Any]:
    out = tmp / f"{name}-{time.monotonic_ns()}.json"
    cmd = [
        sys.executable, "-m", "bench.driver", name, "--out", str(out),
        "--n", str(args.n), "--single", str(args.single), "--samples", str(args.samples),
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
        f"  p50 {fmt(r.get('latency_p50_ms'), '{:.1f}')} ms  dup {r.get('duplicates')}"
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


def paired_ratio(
    runs: dict[str, list[dict[str, Any]]], a: str, b: str, key: str
) -> tuple[float, float, float] | None:
    """Median, min, max of a/b over runs with the same index (interleaved, so paired)."""
    ratios = []
    for ra, rb in zip(runs.get(a, []), runs.get(b, []), strict=False):
        va, vb = ra.get(key), rb.get(key)
        if va and vb and "error" not in ra and "error" not in rb:
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
        for peer in peers:
            parts = []
            for key, title in (
                ("drain", "drain"),
                ("enqueue_single", "enq 1"),
                ("enqueue_batch", "enq batch"),
                ("client_cpu_per_1k", "client CPU"),
            ):
                r = paired_ratio(runs, name, peer, key)
                if r:
                    parts.append(f"{title} {r[0]:.2f}x ({r[1]:.2f}–{r[2]:.2f})")
            lines.append(f"  {name} / {peer}: " + ", ".join(parts or ["no paired runs"]))
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


def chart(summary: dict[str, dict[str, Any]], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [n for n, e in summary.items() if "skipped" not in e and e.get("drain")]
    if not names:
        return False
    colors = ["tab:orange" if summary[n].get("oddjob") else "tab:gray" for n in names]
    panels = [
        ("drain", "drain, jobs/s (1 worker process, 8 threads)"),
        ("enqueue_single", "enqueue one by one, jobs/s"),
        ("enqueue_batch", "enqueue in batches of 1,000, jobs/s"),
        ("client_cpu_per_1k", "worker CPU s per 1,000 jobs (lower is better)"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.2 * len(panels)))
    for ax, (key, label) in zip(axes, panels, strict=True):
        meds, lo, hi = [], [], []
        for n in names:
            m = summary[n].get(key)
            meds.append(m["median"] if m else 0)
            lo.append(m["median"] - m["min"] if m else 0)
            hi.append(m["max"] - m["median"] if m else 0)
        ax.bar(names, meds, color=colors, yerr=[lo, hi], capsize=3)
        ax.set_title(label, fontsize=10)
        ax.set_yscale("log" if key != "client_cpu_per_1k" else "linear")
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        for x, v in enumerate(meds):
            if v:
                ax.annotate(f"{v:,.0f}" if v >= 10 else f"{v:.3f}", (x, v), ha="center",
                            va="bottom", fontsize=7)  # fmt: skip
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
        "--runs", type=int, help="interleaved runs per system (default 3; --quick 1)"
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
    args = parser.parse_args(argv)  # fmt: skip

    args.n = args.n or (1_000 if args.quick else 20_000)
    args.runs = args.runs or (1 if args.quick else 3)
    args.samples = args.samples if args.samples is not None else (20 if args.quick else 200)
    args.single = args.single if args.single is not None else max(1, args.n // 4)
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
    print(f"oddjob bench {started:%Y-%m-%d %H:%M} UTC — {machine()}")
    print(f"N={args.n:,} runs={args.runs} systems={', '.join(selected)}\n")
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in selected}
    skipped: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmpdir:
        tmp = Path(tmpdir)
        for k in range(args.runs):
            print(f"run {k + 1}/{args.runs}", flush=True)
            order = selected[k % len(selected) :] + selected[: k % len(selected)]
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
    text = [
        f"oddjob bench {started:%Y-%m-%d %H:%M} UTC, N={args.n:,}, {args.runs} interleaved run(s)",
        f"machine: {machine()}",
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
        png,
        f"oddjob bench {started:%Y-%m-%d}, N={args.n:,}, medians of {args.runs} run(s)",
    )
    print(f"\nwrote {json_path}" + (f" and {png}" if drawn else " (no chart: matplotlib missing)"))
    failed = sum(e["failed"] for e in summary.values())
    return 1 if failed else 0
