"""Real `oddjob worker` processes on SQL Server: a SIGKILLed worker's job reruns; throughput.

Needs ODDJOB_SQLSERVER_DSN (skips visibly otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from oddjob_sqlserver import SqlServerStorage

from oddjob_core.model import JobState
from oddjob_core.testing import make_envelope

TESTS = Path(__file__).parent


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def worker_env(dsn: str, schema: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
        "ODDJOB_STORAGE": "sqlserver",
        "ODDJOB_SQLSERVER__CONNECTION_STRING": dsn,
        "ODDJOB_SQLSERVER__SCHEMA": schema,
        "ODDJOB_SQLSERVER__POOL_SIZE": "8",
        "ODDJOB_SQLSERVER__RETRY_TIMEOUT": "60",
        "ODDJOB_ALLOWED_PREFIXES": json.dumps(["sqlserverjobs"]),
        "ODDJOB_LEASE": "2",
        "ODDJOB_POLL_INTERVAL": "0.5",
    }


@pytest.fixture
def spawn(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        log = open(tmp_path / f"worker{len(procs)}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "oddjob_core", "worker", "--quiet", *args],
            env=worker_env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _log(tmp_path: Path, index: int) -> str:
    return (tmp_path / f"worker{index}.log").read_text()


def test_sigkilled_worker_job_runs_again_after_its_lease(
    storage: SqlServerStorage, spawn: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    lines, flag = tmp_path / "runs.txt", tmp_path / "hang"
    flag.touch()
    env = make_envelope(
        "default",
        target="sqlserverjobs:hang_while_flag",
        arguments={"path": str(lines), "flag": str(flag)},
    )
    storage.add([env])
    victim = spawn("--workers", "1")
    assert wait_for(lambda: lines.exists() and "start" in lines.read_text(), 60), _log(tmp_path, 0)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    record = storage.get(env.id)
    assert record is not None
    assert record.state is JobState.RUNNING  # nobody recorded an outcome
    flag.unlink()
    survivor = spawn("--workers", "1", "--burst", "--burst-wait", "5")
    survivor.wait(90)
    assert survivor.returncode == 0, _log(tmp_path, 1)
    record = storage.get(env.id)
    assert record is not None
    assert record.state is JobState.SUCCEEDED, _log(tmp_path, 1)
    assert record.envelope.attempts == 2
    assert lines.read_text().splitlines() == [
        "start attempt=1 recovered=False",
        "start attempt=2 recovered=True",
        "end attempt=2",
    ]


def test_two_workers_drain_a_backlog_exactly_once(
    storage: SqlServerStorage,
    spawn: Callable[..., subprocess.Popen[str]],
    worker_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Throughput check: prints jobs/s (no timed assertion: the machine is shared)."""
    worker_env["ODDJOB_LEASE"] = "30"  # no lease may expire here: every job must run once
    lines = tmp_path / "runs.txt"
    total = 3000
    storage.add(
        [
            make_envelope(
                "default",
                target="sqlserverjobs:append_line",
                arguments={"path": str(lines), "line": str(i)},
            )
            for i in range(total)
        ]
    )
    started = time.monotonic()
    workers = [spawn("--workers", "4", "--burst"), spawn("--workers", "4", "--burst")]
    for proc in workers:
        proc.wait(300)
    elapsed = time.monotonic() - started
    for index, proc in enumerate(workers):
        assert proc.returncode == 0, _log(tmp_path, index)
    runs = Counter(lines.read_text().splitlines())
    assert set(runs) == {str(i) for i in range(total)}, "a job was lost"
    assert all(n == 1 for n in runs.values()), "a job ran twice without a crash"
    assert storage.counts("default")["default"] == {JobState.SUCCEEDED: total}
    print(
        f"\n{total} jobs by 2 worker processes x 4 threads in {elapsed:.1f} s "
        f"({total / elapsed:.0f} jobs/s, including process start-up)"
    )
