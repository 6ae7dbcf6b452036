"""Real worker processes on RabbitMQ: a SIGKILLed worker's job is redelivered; a broker restart loses nothing."""

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
from datetime import timedelta
from pathlib import Path

import pytest
from oddjob_rabbitmq import RabbitStorage

from oddjob_core.clock import utcnow
from oddjob_core.model import JobState, RetryPolicy
from oddjob_core.testing import make_envelope

TESTS = Path(__file__).parent
URL = os.environ.get("ODDJOB_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
MakeStorage = Callable[..., RabbitStorage]
Spawn = Callable[..., "subprocess.Popen[str]"]


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def worker_env(prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
        "ODDJOB_STORAGE": "rabbitmq",
        "ODDJOB_RABBITMQ__URL": URL,
        "ODDJOB_RABBITMQ__PREFIX": prefix,
        "ODDJOB_RABBITMQ__RECONNECT_INTERVAL": "0.5",
        "ODDJOB_RABBITMQ__PUBLISH_TIMEOUT": "120",
        "ODDJOB_ALLOWED_PREFIXES": json.dumps(["rmqjobs"]),
        "ODDJOB_POLL_INTERVAL": "0.5",
    }


@pytest.fixture
def spawn(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Spawn]:
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


def test_sigkilled_worker_job_is_redelivered_and_completes(
    make_storage: MakeStorage, spawn: Spawn, tmp_path: Path
) -> None:
    storage = make_storage()
    lines, flag = tmp_path / "runs.txt", tmp_path / "hang"
    flag.touch()
    env = make_envelope(
        "default",
        target="rmqjobs:hang_while_flag",
        arguments={"path": str(lines), "flag": str(flag)},
    )
    storage.add([env])
    victim = spawn("--workers", "1")
    assert wait_for(lambda: lines.exists() and "start" in lines.read_text(), 60), _log(tmp_path, 0)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    flag.unlink()
    survivor = spawn("--workers", "1", "--burst", "--burst-wait", "5")
    survivor.wait(90)
    assert survivor.returncode == 0, _log(tmp_path, 1)
    assert lines.read_text().splitlines() == [
        "start attempt=1 recovered=False",
        "start attempt=2 recovered=True",
        "end attempt=2",
    ], _log(tmp_path, 1)
    counts = storage.counts("default")["default"]
    assert counts[JobState.READY] == 0
    assert counts[JobState.FAILED] == 0


def test_worker_stopping_after_a_drain_leaves_nothing_to_run_again(
    make_storage: MakeStorage, spawn: Spawn, tmp_path: Path
) -> None:
    """Acks are written after the job returns; a clean stop must write them before closing."""
    storage = make_storage()
    lines, total = tmp_path / "runs.txt", 2000
    envs = [
        make_envelope(
            "default", target="rmqjobs:append_line", arguments={"path": str(lines), "line": str(i)}
        )
        for i in range(total)
    ]
    for start in range(0, total, 1000):
        storage.add(envs[start : start + 1000])
    first = spawn("--workers", "8", "--burst", "--burst-wait", "1")
    first.wait(120)
    assert first.returncode == 0, _log(tmp_path, 0)
    second = spawn("--workers", "2", "--burst", "--burst-wait", "1")
    second.wait(60)
    assert second.returncode == 0, _log(tmp_path, 1)
    runs = Counter(lines.read_text().splitlines())
    assert set(runs) == {str(i) for i in range(total)}
    assert sum(n - 1 for n in runs.values()) == 0, "a clean stop caused redeliveries"
    assert storage.counts("default")["default"][JobState.READY] == 0


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_two_workers_survive_a_broker_restart_and_scheduled_jobs_stay(
    make_storage: MakeStorage, spawn: Spawn, tmp_path: Path
) -> None:
    """One short restart of the shared broker covers both: the drain and the 2-day job."""
    if os.environ.get("ODDJOB_TEST_RESTART_RABBITMQ", "1") == "0":
        pytest.skip("ODDJOB_TEST_RESTART_RABBITMQ=0: not restarting the shared broker")
    if shutil.which("rabbitmqctl") is None or _rabbitmqctl("status").returncode != 0:
        pytest.skip("rabbitmqctl cannot control the broker here: cannot restart it")
    storage = make_storage()
    lines = tmp_path / "runs.txt"
    total, failing = 5000, {7, 1234, 4321}
    later = make_envelope("default", target="rmqjobs:append_line", run_at=utcnow() + timedelta(days=2),
                          arguments={"path": str(lines), "line": "later"})  # fmt: skip
    storage.add([later])
    envs = [
        make_envelope(
            "default",
            target="rmqjobs:fail_if",
            arguments={"path": str(lines), "line": str(i), "fail": i in failing, "seconds": 0.01},
            retry=RetryPolicy(max_retries=0),
        )
        for i in range(total)
    ]
    for start in range(0, total, 1000):
        storage.add(envs[start : start + 1000])
    workers = [spawn("--workers", "4"), spawn("--workers", "4")]
    assert wait_for(lambda: lines.exists() and len(lines.read_text().splitlines()) > 300, 120)
    restarted_at = len(lines.read_text().splitlines())
    stop = _rabbitmqctl("stop_app")
    try:
        assert stop.returncode == 0, stop.stderr
        time.sleep(1)
    finally:
        start_result = _rabbitmqctl("start_app")
    assert start_result.returncode == 0, start_result.stderr
    assert len(lines.read_text().splitlines()) < total, "the drain finished before the restart"

    checker = make_storage()

    def drained() -> bool:
        c = checker.counts("default")["default"]
        return c[JobState.READY] == 0 and c[JobState.FAILED] == len(failing)

    assert wait_for(drained, 240), checker.counts("default")
    time.sleep(2)  # let the last acks land
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    for proc in workers:
        proc.wait(60)
    runs = Counter(lines.read_text().splitlines())
    assert set(runs) == {str(i) for i in range(total)}, "a job was lost (or 'later' ran early)"
    duplicates = sum(n - 1 for n in runs.values())
    print(f"\nbroker restart after {restarted_at} runs: {total} jobs, {duplicates} ran twice")
    failed = {r.envelope.arguments["line"] for r in checker.failed_jobs("default")}
    assert failed == {str(i) for i in failing}
    counts = checker.counts("default")["default"]
    assert counts[JobState.SCHEDULED] == 1, "the job 2 days ahead did not survive the restart"
    storage.add([make_envelope("default")])  # the fixture's old connection reconnected by itself
    for index, proc in enumerate(workers):
        log = _log(tmp_path, index)
        # aiormq logs the connection reset with a traceback; oddjob itself must not crash
        assert proc.returncode == 0, log
        assert "worker crashed" not in log, log
        assert "reconnected to RabbitMQ" in log or "INFO" not in log, log
