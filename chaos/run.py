"""Scenarios, backends and the verdict table of ``python -m chaos``.

Each scenario drains a batch of jobs through real ``oddjob worker`` processes
while it injects one kind of fault, then compares three sources: what the
producer enqueued, what the jobs logged outside the store (``chaos.jobs``),
and the final state the store reports. Per scenario and backend it prints:

- jobs: enqueued;
- lost: a job that never completed (no ``done`` line for a job meant to
  succeed; neither a run nor a failed record for one meant to fail);
- run twice: jobs that completed more than once (at-least-once delivery
  allows it after a crash; reported, not an error);
- wrong: a final state that contradicts the logs or the job (a succeeding job
  recorded failed, a failing one recorded succeeded, a poison job that ran or
  is not failed, a job left waiting or running);
- recovery: seconds from the end of the fault to the last outcome.

The run exits 1 when any row has a lost job or a wrong outcome.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from oddjob_core import Oddjob, RetryPolicy
from oddjob_core.model import JobState
from oddjob_core.storage import management_of, queue_management_of
from oddjob_core.testing import WorkerProcesses, make_worker_env, settings_env, wait_for

from . import jobs
from .network import Host, Network, NetworkUnavailable
from .servers import PrivatePostgres, PrivateRabbit

ServerT = TypeVar("ServerT", PrivatePostgres, PrivateRabbit)

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "chaos"
LEASE = 2.0


@dataclass
class Size:
    """How big a run is: ``short`` for CI, ``long`` for the note."""

    jobs: int
    failing: int
    seconds: float  # per job
    workers: int  # processes
    threads: int  # per process
    kills: int
    timeout: float  # for a drain to finish after its fault


SHORT = Size(jobs=120, failing=6, seconds=0.02, workers=3, threads=4, kills=3, timeout=120)
LONG = Size(jobs=2000, failing=40, seconds=0.01, workers=4, threads=8, kills=12, timeout=600)


class Backend:
    """One storage under test: worker settings per fresh namespace, faults on its server."""

    name = "?"
    server_faults = True
    network: Network | None = None  # hosts for the partition scenario, when it runs

    def settings(self, ns: str, address: str = "127.0.0.1") -> dict[str, Any]:
        """Worker settings on namespace ``ns``, reaching the server at ``address``."""
        raise NotImplementedError

    def restart(self) -> None:
        """Restart the server under the workers (a crash where it can be one)."""

    def outage(self, seconds: float) -> None:
        """Take the server away for ``seconds``, then bring it back."""

    def close(self) -> None:
        pass


class FilesystemBackend(Backend):
    name = "filesystem"
    server_faults = False

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="oddjob-chaos-fs-"))

    def settings(self, ns: str, address: str = "127.0.0.1") -> dict[str, Any]:
        return {"storage": "filesystem", "filesystem": {"path": str(self.dir / ns)}}

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class ServerBackend(Backend, Generic[ServerT]):
    """A backend on a private server of its own, started here and removed on close."""

    def __init__(
        self, server: Callable[[tuple[str, ...]], ServerT], network: Network | None
    ) -> None:
        self.network = network
        self.server: ServerT = server(tuple(network.server_addresses) if network else ())
        self.server.start()

    def close(self) -> None:
        self.server.close()


class PostgresBackend(ServerBackend[PrivatePostgres]):
    name = "postgres"

    def __init__(self, network: Network | None = None) -> None:
        super().__init__(PrivatePostgres, network)
        self.restarts = 0

    def settings(self, ns: str, address: str = "127.0.0.1") -> dict[str, Any]:
        dsn = self.server.dsn_at(address)
        return {
            "storage": "postgres",
            "postgres": {"dsn": dsn, "schema": f"chaos_{ns}", "pool_max_size": 4},
        }

    def restart(self) -> None:
        # alternate: a clean fast shutdown, then a crash (immediate: recovery on start)
        self.server.restart("fast" if self.restarts % 2 == 0 else "immediate")
        self.restarts += 1

    def outage(self, seconds: float) -> None:
        self.server.stop("fast")
        time.sleep(seconds)
        self.server.start()


class RabbitBackend(ServerBackend[PrivateRabbit]):
    name = "rabbitmq"

    def __init__(self, network: Network | None = None) -> None:
        super().__init__(PrivateRabbit, network)

    def settings(self, ns: str, address: str = "127.0.0.1") -> dict[str, Any]:
        return {
            "storage": "rabbitmq",
            "rabbitmq": {
                "url": self.server.url_at(address),
                "prefix": f"chaos.{ns}.",
                "reconnect_interval": 0.5,
                "publish_timeout": 120,
            },
        }

    def restart(self) -> None:
        self.server.restart("kill")  # kill -9 of the node, then start

    def outage(self, seconds: float) -> None:
        self.server.stop_app()
        time.sleep(seconds)
        self.server.start_app()


BACKENDS: dict[str, Callable[[Network | None], Backend]] = {
    "filesystem": lambda network: FilesystemBackend(),
    "postgres": PostgresBackend,
    "rabbitmq": RabbitBackend,
}


@dataclass
class Row:
    scenario: str
    backend: str
    jobs: int = 0
    lost: int = 0
    twice: int = 0
    wrong: int = 0
    recovery: float | None = None
    note: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.wrong == 0 and not self.note.startswith("ERROR")


@dataclass
class Run:
    """One scenario on one backend: its namespace, jobs, workers and log folder."""

    backend: Backend
    size: Size
    dir: Path
    ns: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    expected: dict[str, str] = field(default_factory=dict)  # key -> "ok" | "fail" | "poison"
    ids: dict[str, uuid.UUID] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = self.dir / "runs"
        self.logs.mkdir(parents=True)
        self.settings = self._settings("127.0.0.1")
        env = make_worker_env(settings_env(self.settings), [ROOT])
        self.workers = WorkerProcesses(env, cwd=self.dir)

    def _settings(self, address: str) -> dict[str, Any]:
        return {
            **self.backend.settings(self.ns, address),
            "imports": ["chaos.jobs"],
            "lease": LEASE,
            "poll_interval": 0.2,
            "shutdown_timeout": 5,
        }

    def app(self) -> Oddjob:
        return Oddjob(**self.settings)

    def enqueue(self, poison: int = 0, seconds: float | None = None) -> None:
        from oddjob_core import call

        size = self.size
        with self.app() as app:
            calls = []
            for i in range(size.jobs):
                key = f"ok{i}"
                self.expected[key] = "ok"
                length = size.seconds if seconds is None else seconds
                calls.append(call(jobs.work, str(self.logs), key, length))
            self.ids.update(zip(self.expected, app.enqueue_many(calls), strict=True))
            doomed = app.options(retry=RetryPolicy(max_retries=0))
            for i in range(size.failing):
                key = f"fail{i}"
                self.expected[key] = "fail"
                self.ids[key] = doomed.enqueue(jobs.work, str(self.logs), key, 0.0, True)
            old = sys.getrecursionlimit()
            sys.setrecursionlimit(20_000)  # a producer that raised its limit
            try:
                for i in range(poison):
                    key = f"poison{i}"
                    deep: Any = []
                    for _ in range(3000):
                        deep = [deep]
                    self.expected[key] = "poison"
                    self.ids[key] = app.enqueue(jobs.work, str(self.logs), key, 0.0, False, deep)
            finally:
                sys.setrecursionlimit(old)

    def start_worker(self, host: Host | None = None) -> subprocess.Popen[str]:
        """A worker process here, or inside ``host``'s network namespace (another "host")."""
        args = ["--queue", QUEUE, "--workers", str(self.size.threads)]
        if host is None:
            return self.workers.start(*args)
        env = make_worker_env(settings_env(self._settings(host.server_address)), [ROOT])
        command = host.command([sys.executable, "-m", "oddjob_core", "worker", "--quiet", *args])
        with self.workers.log_path(len(self.workers.processes)).open("w") as log:
            proc = subprocess.Popen(command, env=env, cwd=self.dir, stdout=log,
                                    stderr=subprocess.STDOUT, text=True)  # fmt: skip
        self.workers.processes.append(proc)
        return proc

    def wait_running(self, fraction: float = 0.1) -> None:
        """Wait until the workers have started some of the jobs (they are up and draining)."""
        want = max(1, int(len(self.expected) * fraction))
        wait_for(lambda: sum(jobs.read_log(self.logs)[0].values()) >= want, 120, interval=0.1)

    def alive(self) -> list[subprocess.Popen[str]]:
        return [p for p in self.workers.processes if p.poll() is None]

    def finished(self) -> bool:
        """Every job meant to succeed completed, every other one was attempted or failed,
        and the store holds nothing waiting or running."""
        starts, dones = jobs.read_log(self.logs)
        for key, kind in self.expected.items():
            if kind == "ok" and not dones.get(key):
                return False
            if kind == "fail" and not starts.get(key):
                return False
        with self.app() as app:
            counted = queue_management_of(app.storage)
            counts = counted.counts(QUEUE).get(QUEUE, {}) if counted else {}
        return all(n == 0 for state, n in counts.items() if not state.finished)

    def verdict(self, row: Row) -> None:
        starts, dones = jobs.read_log(self.logs)
        row.jobs = len(self.expected)
        states = self._final_states()
        for key, kind in self.expected.items():
            done, started = dones.get(key, 0), starts.get(key, 0)
            state = states.get(key)
            if kind == "ok":
                if done == 0:
                    row.lost += 1
                    row.problems.append(f"{key}: never completed (store: {state})")
                    continue
                if done > 1:
                    row.twice += 1
                if state not in (None, JobState.SUCCEEDED):
                    row.wrong += 1
                    row.problems.append(f"{key}: completed {done}x but the store says {state}")
            elif kind == "fail":
                if started == 0 and state is not JobState.FAILED:
                    row.lost += 1
                    row.problems.append(f"{key}: never attempted (store: {state})")
                elif done or state is not JobState.FAILED:
                    row.wrong += 1
                    row.problems.append(f"{key}: should have failed; done={done} store={state}")
            elif started or state is not JobState.FAILED:
                row.wrong += 1
                row.problems.append(f"{key}: poison job ran {started}x; store says {state}")

    def _final_states(self) -> dict[str, JobState | None]:
        """The store's last word per key: get() where it can, else the failed list."""
        states: dict[str, JobState | None] = {}
        with self.app() as app:
            storage = app.storage
            managed = management_of(storage)
            if managed is not None:
                for key, job_id in self.ids.items():
                    record = managed.get(job_id)
                    states[key] = record.state if record else None
                return states
            failed_jobs = getattr(storage, "failed_jobs", None)  # RabbitMQ: the failed queue
            failed_ids = {r.id for r in failed_jobs(QUEUE)} if failed_jobs else set()
            counted = queue_management_of(storage)
            counts = counted.counts(QUEUE).get(QUEUE, {}) if counted else {}
            waiting = sum(n for s, n in counts.items() if not s.finished)
            for key, job_id in self.ids.items():
                if job_id in failed_ids:
                    states[key] = JobState.FAILED
                else:  # gone from every queue: succeeded (the logs say whether it ran)
                    states[key] = JobState.READY if waiting else None
            return states


# -- scenarios --------------------------------------------------------------------------


def _drain(run: Run, row: Row, since: float) -> None:
    if wait_for(run.finished, run.size.timeout, interval=0.25):
        row.recovery = time.monotonic() - since
    else:
        row.note = f"not drained after {run.size.timeout:.0f} s"


def scenario_poison(run: Run, row: Row) -> None:
    """A job nested 3,000 deep among the others: it fails alone, nothing waits behind it."""
    run.enqueue(poison=1)
    start = time.monotonic()
    for _ in range(2):
        run.start_worker()
    _drain(run, row, start)


def scenario_sigkill(run: Run, row: Row) -> None:
    """Workers SIGKILLed mid-drain and replaced: their jobs run again after the lease."""
    run.enqueue(seconds=0.1)
    for _ in range(run.size.workers):
        run.start_worker()
    run.wait_running(0.05)
    rng = random.Random(12)
    for _ in range(run.size.kills):
        time.sleep(rng.uniform(0.5, 1.5))
        alive = run.alive()
        if alive:
            victim = rng.choice(alive)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        run.start_worker()
    _drain(run, row, time.monotonic())


def scenario_sigstop(run: Run, row: Row) -> None:
    """A worker frozen (SIGSTOP) past its lease, then resumed: fencing refuses its late outcomes."""
    run.enqueue(seconds=0.3)  # long enough that the frozen worker holds running jobs
    for _ in range(run.size.workers):
        run.start_worker()
    run.wait_running(0.1)
    victim = run.alive()[0]
    victim.send_signal(signal.SIGSTOP)
    time.sleep(LEASE * 3)
    victim.send_signal(signal.SIGCONT)
    _drain(run, row, time.monotonic())


def _under_server_fault(run: Run, row: Row, fault: Callable[[], None]) -> None:
    run.enqueue()
    for _ in range(run.size.workers):
        run.start_worker()
    run.wait_running(0.1)
    fault()
    _drain(run, row, time.monotonic())


def scenario_restart(run: Run, row: Row) -> None:
    """The server restarted under the workers (PostgreSQL fast then immediate; RabbitMQ kill -9)."""
    _under_server_fault(run, row, run.backend.restart)


def scenario_outage(run: Run, row: Row) -> None:
    """The server gone for 5 s (PostgreSQL stopped; RabbitMQ stop_app), then back."""
    _under_server_fault(run, row, lambda: run.backend.outage(5.0))


def scenario_partition(run: Run, row: Row) -> None:
    """Workers on two other "hosts" (network namespaces); one is cut off from the server
    while it holds leases (its link down, 4 leases long), then healed: fencing holds."""
    network = run.backend.network
    assert network is not None
    run.enqueue(seconds=0.3)
    for host in network.hosts:
        run.start_worker(host)
    run.start_worker()  # and one here
    run.wait_running(0.1)
    cut = network.hosts[0]
    cut.cut()
    try:
        time.sleep(LEASE * 4)
    finally:
        cut.heal()
    _drain(run, row, time.monotonic())


SCENARIOS: dict[str, tuple[Callable[[Run, Row], None], bool]] = {
    # name: (run it, needs a server)
    "poison": (scenario_poison, False),
    "sigkill": (scenario_sigkill, False),
    "sigstop": (scenario_sigstop, False),
    "restart": (scenario_restart, True),
    "outage": (scenario_outage, True),
    "partition": (scenario_partition, True),
}


def run_one(backend: Backend, scenario: str, size: Size, base: Path) -> Row:
    play, needs_server = SCENARIOS[scenario]
    row = Row(scenario, backend.name)
    if needs_server and not backend.server_faults:
        row.note = "n/a (no server)"
        return row
    if scenario == "partition" and backend.network is None:
        row.note = "skipped (no network namespaces here: needs root and ip)"
        return row
    run = Run(backend, size, base / f"{scenario}-{backend.name}")
    try:
        with run.workers:
            play(run, row)
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.workers.terminate_all(timeout=30)
        run.verdict(row)
    except Exception as exc:  # a scenario that crashed is a failed row, not a crashed run
        row.note = f"ERROR {type(exc).__name__}: {exc}"
    if row.problems:
        (run.dir / "problems.txt").write_text("\n".join(row.problems) + "\n")
    return row


def print_table(rows: list[Row], out: Any = sys.stdout) -> None:
    header = f"{'scenario':<9} {'backend':<11} {'jobs':>5} {'lost':>5} {'run twice':>9} "
    header += f"{'wrong':>5} {'recovery':>9}  note"
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in rows:
        recovery = f"{r.recovery:.1f} s" if r.recovery is not None else "-"
        print(
            f"{r.scenario:<9} {r.backend:<11} {r.jobs:>5} {r.lost:>5} {r.twice:>9} "
            f"{r.wrong:>5} {recovery:>9}  {r.note}",
            file=out,
        )
    out.flush()


@contextlib.contextmanager
def backends(names: list[str], network: Network | None) -> Iterator[list[Backend]]:
    """The backends, their private servers started side by side."""
    made: list[Backend] = []
    try:
        with ThreadPoolExecutor(len(names)) as pool:
            futures = [pool.submit(BACKENDS[name], network) for name in names]
            for future in futures:
                with contextlib.suppress(Exception):
                    made.append(future.result())
            for future in futures:
                future.result()  # raise the first failure, after keeping what started
        yield made
    finally:
        for b in made:
            with contextlib.suppress(Exception):
                b.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--long", action="store_true", help="the long run (minutes), not CI's")
    parser.add_argument("--backends", default="filesystem,postgres,rabbitmq")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--keep", action="store_true", help="keep the run folder")
    args = parser.parse_args(argv)
    size = LONG if args.long else SHORT
    base = Path(tempfile.mkdtemp(prefix="oddjob-chaos-"))
    started = time.monotonic()
    rows: list[Row] = []
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    network = None
    if "partition" in args.scenarios.split(","):
        try:
            network = Network(2)
        except NetworkUnavailable as exc:
            print(f"chaos: no partition scenario: {exc}")
    with contextlib.ExitStack() as stack:
        if network is not None:
            stack.callback(network.close)
        made = stack.enter_context(backends(args.backends.split(","), network))
        print(f"chaos: private servers up after {time.monotonic() - started:.1f} s; runs in {base}")
        for scenario in args.scenarios.split(","):
            # the backends are independent (own servers, namespaces, workers): side by side,
            # except for the partition, whose hosts they share
            with ThreadPoolExecutor(1 if scenario == "partition" else len(made)) as pool:
                futures = [pool.submit(run_one, b, scenario, size, base) for b in made]
                done = [f.result() for f in futures]
            for row in done:
                rows.append(row)
                print(f"  {scenario} on {row.backend}: {'ok' if row.ok else 'FAILED'} "
                      f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
    print()
    print_table(rows)
    bad = [r for r in rows if not r.ok]
    for r in bad:
        for problem in r.problems[:5]:
            print(f"  {r.scenario}/{r.backend}: {problem}")
    print(f"\nchaos: {len(rows)} rows, {len(bad)} failed, {time.monotonic() - started:.0f} s")
    if args.keep or bad:
        print(f"run folder kept: {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if bad else 0
