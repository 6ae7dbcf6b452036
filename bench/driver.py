"""One measured run of one system: ``python -m bench.driver SYSTEM --out result.json``.

Started by bench/cli.py in its own session so a hung peer can be killed as a group.
Sequence: set up a fresh queue/database/vhost -> enqueue N jobs (single, then
batch where the library has a batch API) -> start ONE worker process (8 threads)
-> watch the counter file until N executions -> idle pickup latency, one job at a
time -> settle, then check every job's index: none lost, none run twice -> stop the
worker -> clean up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from . import measure
from .systems import Context, System, by_name

REPO = Path(__file__).resolve().parent.parent


def start_worker(
    system: System, ctx: Context, extra_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(system.env)
    env.update(extra_env)
    env["BENCH_COUNTER"] = str(ctx.counter)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    log = open(ctx.workdir / "worker.log", "wb")  # noqa: SIM115 - owned by the child
    return subprocess.Popen(
        system.worker_command(ctx),
        env=env,
        cwd=ctx.workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # leftovers of the worker's group (forked children)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


PRODUCERS = 16  # threads enqueuing one job per call at once, like a web app's request threads
#: seconds between the enqueue phases, for every system: work a phase left to a background
#: thread (oddjob-filesystem turns journaled jobs into job files within 1 s) finishes before
#: the next phase is timed, instead of being charged to it
SETTLE = 2.0


def enqueue_concurrently(system: System, indices: range) -> float:
    """Enqueue ``indices`` one job per call from ``PRODUCERS`` threads at once; return seconds."""
    lock = threading.Lock()
    todo = iter(indices)
    errors: list[BaseException] = []
    start = threading.Barrier(PRODUCERS + 1)

    def produce() -> None:
        start.wait()
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            try:
                system.enqueue_one(i)
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=produce) for _ in range(PRODUCERS)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"concurrent enqueue failed: {errors[0]!r}") from errors[0]
    return elapsed


def latency_samples(
    system: System, fd: int, first_index: int, samples: int, budget: float, alive: Any
) -> list[float]:
    """Enqueue one job into the idle worker, time until it has run; repeat."""
    out: list[float] = []
    end = time.monotonic() + budget
    for k in range(samples):
        if time.monotonic() > end or not alive():
            break
        time.sleep(random.uniform(0.02, 0.05))
        before = measure.counted(fd)
        start = time.monotonic()
        system.enqueue_one(first_index + k)
        while measure.counted(fd) <= before and time.monotonic() - start < 15:
            time.sleep(0.0002)
        out.append(time.monotonic() - start)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    system = by_name()[args.system]()
    result: dict[str, Any] = {
        "system": system.name,
        "family": system.family,
        "oddjob": system.is_oddjob,
        "n": args.n,
    }
    reason = system.unavailable()
    if reason:
        result["skipped"] = reason
        return result
    n = args.n
    concurrent = min(args.concurrent, n // 4) if system.thread_safe_enqueue else 0
    single = n - concurrent if not system.has_batch else min(n - concurrent, args.single)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{system.name}-"))
    ctx = Context(workdir, workdir / "counter")
    ctx.counter.touch()
    os.environ["BENCH_COUNTER"] = str(ctx.counter)
    fd = os.open(ctx.counter, os.O_RDONLY)
    proc: subprocess.Popen[bytes] | None = None
    xacts_before: int | None = None
    set_up = False
    try:
        system.setup(ctx)
        set_up = True
        extra: dict[str, str] = {}
        mem_result = workdir / "memory.json"
        if system.in_process:
            extra["BENCH_MEMORY"] = json.dumps(
                {
                    "n": n,
                    "single": single,
                    "samples": args.samples,
                    "latency_budget": args.latency_budget,
                    "result": str(mem_result),
                }
            )
        else:
            calls: list[float] = []
            t0 = time.perf_counter()
            for i in range(single):
                started = time.perf_counter()
                system.enqueue_one(i)
                calls.append(time.perf_counter() - started)
            t1 = time.perf_counter()
            result["enqueue_single"] = single / (t1 - t0) if single else None
            result["enqueue_p50_ms"] = (
                (measure.percentile(calls, 50) or 0) * 1000 if calls else None
            )
            result["enqueue_p99_ms"] = (
                (measure.percentile(calls, 99) or 0) * 1000 if calls else None
            )
            if concurrent:
                time.sleep(SETTLE)
                elapsed = enqueue_concurrently(system, range(single, single + concurrent))
                result["enqueue_concurrent"] = concurrent / elapsed
            time.sleep(SETTLE)
            t2 = time.perf_counter()
            for start in range(single + concurrent, n, 1000):
                system.enqueue_batch(list(range(start, min(n, start + 1000))))
            t3 = time.perf_counter()
            rest = n - single - concurrent
            result["enqueue_batch"] = rest / (t3 - t2) if rest else None
            if measure.counted(fd):
                raise RuntimeError("jobs ran before any worker was started")

        system.before_worker()
        xacts_before = system.transactions()
        proc = start_worker(system, ctx, extra)
        pid = proc.pid

        def snapshot() -> tuple[float, float | None]:
            procs = measure.processes()
            return measure.tree_cpu(pid, procs), measure.server_cpu(system.server, procs)

        def alive() -> bool:
            return proc is not None and proc.poll() is None

        trace = measure.watch_drain(
            fd,
            n,
            snapshot,
            stall_timeout=args.stall_timeout,
            deadline=time.monotonic() + args.drain_timeout,
            alive=alive,
        )
        done = trace.points[-1][1] if trace.points else 0
        result["drained"] = done
        if done >= n:
            result["drain"] = trace.rate(1, n)
            result["drain_first_quarter"] = trace.rate(1, n // 4)
            result["drain_last_quarter"] = trace.rate(n - n // 4, n)
            counted = done - trace.points[0][1]
            if counted > 0:
                client = trace.cpu_last[0] - trace.cpu_first[0]
                result["client_cpu_per_1k"] = client / counted * 1000
                s0, s1 = trace.cpu_first[1], trace.cpu_last[1]
                if s0 is not None and s1 is not None:
                    result["server_cpu_per_1k"] = (s1 - s0) / counted * 1000
        else:
            result["error"] = f"drain stopped at {done} of {n} executions"

        sent = 0
        if done >= n:
            if system.in_process:
                assert proc is not None
                try:
                    proc.wait(args.latency_budget + 60)
                except subprocess.TimeoutExpired:
                    pass
                if mem_result.exists():
                    data = json.loads(mem_result.read_text())
                    result["enqueue_single"] = data["enqueue_single"]
                    result["enqueue_batch"] = data["enqueue_batch"]
                    for key in ("drain", "client_cpu_per_1k"):  # its own, finer clocks
                        if data.get(key):
                            result[key] = data[key]
                    lat = data["latencies"]
                else:
                    lat = []
            else:
                lat = latency_samples(system, fd, n, args.samples, args.latency_budget, alive)
            sent = len(lat)
            result["latency_samples"] = sent
            result["latency_p50_ms"] = (measure.percentile(lat, 50) or 0) * 1000 if lat else None
            result["latency_p99_ms"] = (measure.percentile(lat, 99) or 0) * 1000 if lat else None

        # settle: let stray duplicates show up before counting
        last, quiet_since = measure.counted(fd), time.monotonic()
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline:
            time.sleep(0.05)
            size = measure.counted(fd)
            if size != last:
                last, quiet_since = size, time.monotonic()
            elif time.monotonic() - quiet_since > min(1.0, args.settle):
                break
        check = measure.validate(ctx.counter, n + sent)
        result["executed"] = check.executions
        result["lost"] = check.lost
        result["duplicates"] = check.duplicated
        result["unknown"] = check.unknown
        if not check.ok and "error" not in result:
            result["error"] = f"job-by-job check failed: {check}"
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-3000:]
    finally:
        if proc is not None:
            stop_worker(proc)
            log = (workdir / "worker.log").read_bytes().decode(errors="replace")
            if "error" in result:
                result["worker_log_tail"] = log[-3000:]
            if xacts_before is not None and result.get("executed"):
                # backends flush their statistics when they exit: count after the worker is gone.
                # Includes start-up, idle polls and the latency samples: all jobs, all overhead.
                time.sleep(0.5)
                xacts = (system.transactions() or 0) - xacts_before
                result["db_transactions_per_job"] = xacts / result["executed"]
        for step in (system.close_producer, lambda: system.teardown(ctx) if set_up else None):
            try:
                step()
            except Exception as exc:
                result.setdefault("cleanup_errors", []).append(f"{type(exc).__name__}: {exc}")
        os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.driver")
    parser.add_argument("system")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--single", type=int, default=5_000)
    parser.add_argument("--concurrent", type=int, default=2_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--latency-budget", type=float, default=30.0)
    parser.add_argument("--stall-timeout", type=float, default=45.0)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = run(args)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
