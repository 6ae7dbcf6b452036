"""Real worker processes on PostgreSQL: a SIGKILLed worker's job reruns; a server restart loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from oddjob_postgres import PostgresStorage

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
        "ODDJOB_STORAGE": "postgres",
        "ODDJOB_POSTGRES__DSN": dsn,
        "ODDJOB_POSTGRES__SCHEMA": schema,
        "ODDJOB_POSTGRES__POOL_MAX_SIZE": "6",
        "ODDJOB_POSTGRES__RETRY_TIMEOUT": "60",
        "ODDJOB_ALLOWED_PREFIXES": json.dumps(["pgjobs"]),
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
    storage: PostgresStorage, spawn: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    lines, flag = tmp_path / "runs.txt", tmp_path / "hang"
    flag.touch()
    env = make_envelope(
        "default",
        target="pgjobs:hang_while_flag",
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


@pytest.mark.slow
def test_two_workers_survive_a_server_restart_without_losing_jobs(
    storage: PostgresStorage,
    spawn: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
    make_options: Callable[..., Any],
) -> None:
    if os.environ.get("ODDJOB_TEST_RESTART_POSTGRES", "1") == "0":
        pytest.skip("ODDJOB_TEST_RESTART_POSTGRES=0: not restarting the shared server")
    if shutil.which("pg_ctlcluster") is None:
        pytest.skip("pg_ctlcluster is not installed: cannot restart the server here")
    lines = tmp_path / "runs.txt"
    total = 5000
    envs = [
        make_envelope(
            "default", target="pgjobs:append_line", arguments={"path": str(lines), "line": str(i)}
        )
        for i in range(total)
    ]
    storage.add(envs)
    workers = [spawn("--workers", "4"), spawn("--workers", "4")]
    assert wait_for(lambda: lines.exists() and len(lines.read_text().splitlines()) > 300, 120)
    restart = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if restart.returncode != 0:
        pytest.skip(f"cannot restart PostgreSQL here: {restart.stderr.strip()}")
    restarted_at = len(lines.read_text().splitlines())
    assert restarted_at < total, "the drain finished before the restart: nothing was tested"

    checker = PostgresStorage(make_options())  # a fresh pool: the fixture's died with the server
    try:

        def all_done() -> bool:
            counts = checker.counts("default").get("default", {})
            return counts.get(JobState.SUCCEEDED, 0) == total

        assert wait_for(all_done, 240), checker.counts()
    finally:
        checker.close()
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    for proc in workers:
        proc.wait(60)
    runs = Counter(lines.read_text().splitlines())
    assert set(runs) == {str(i) for i in range(total)}, "a job was lost"
    duplicates = sum(n - 1 for n in runs.values())
    print(f"\nrestart after {restarted_at} runs: {total} jobs, {duplicates} duplicate run(s)")
    for index in range(len(workers)):
        log = _log(tmp_path, index)
        assert "Traceback" not in log, log
