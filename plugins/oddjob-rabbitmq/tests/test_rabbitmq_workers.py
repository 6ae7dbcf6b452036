"""Real worker processes on RabbitMQ: a SIGKILLed worker's job is redelivered; a broker restart loses nothing."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from oddjob_rabbitmq import RabbitOptions, RabbitStorage

from oddjob_core.clock import utcnow
from oddjob_core.model import JobState, RetryPolicy
from oddjob_core.testing import (
    WorkerProcesses,
    WorkerSuite,
    make_envelope,
    make_worker_env,
    settings_env,
    targets,
    wait_for,
)
from oddjob_core.testing.schedule_suite import ScheduleWorkerSuite
from oddjob_core.testing.worker_suite import BASE_SETTINGS

TESTS = Path(__file__).parent
URL = os.environ.get("ODDJOB_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
MakeStorage = Callable[..., RabbitStorage]


@pytest.fixture
def worker_settings(clean_prefix: str) -> dict[str, Any]:
    """Workers on this test's prefix (the suite adds the poll interval); deleted after."""
    prefix = clean_prefix
    rabbitmq = {"url": URL, "prefix": prefix, "reconnect_interval": 0.5, "publish_timeout": 120}
    return {
        "storage": "rabbitmq",
        "rabbitmq": rabbitmq,
        "lease": 30,  # keeps the old default
        "allowed_prefixes": ["rmqjobs", targets.__name__],
    }


@pytest.fixture
def storage(make_storage: MakeStorage) -> RabbitStorage:
    return make_storage()


class TestRabbitWorkers(WorkerSuite, ScheduleWorkerSuite):
    worker_pythonpath = (str(TESTS),)  # rmqjobs (fail_if, flaky) lives in the tests folder

    def test_worker_stopping_after_a_drain_leaves_nothing_to_run_again(
        self, storage: RabbitStorage, workers: WorkerProcesses, tmp_path: Path
    ) -> None:
        """Acks are written after the job returns; a clean stop must write them before closing."""
        lines, total = tmp_path / "runs.txt", 2000
        envs = [
            make_envelope(
                "default",
                target=f"{targets.__name__}:append_line",
                arguments={"path": str(lines), "line": str(i)},
            )
            for i in range(total)
        ]
        for start in range(0, total, 1000):
            storage.add(envs[start : start + 1000])
        first = workers.start("--workers", "8", "--burst", "--burst-wait", "1")
        first.wait(120)
        assert first.returncode == 0, workers.log(0)
        second = workers.start("--workers", "2", "--burst", "--burst-wait", "1")
        second.wait(60)
        assert second.returncode == 0, workers.log(1)
        runs = Counter(lines.read_text().splitlines())
        assert set(runs) == {str(i) for i in range(total)}
        assert sum(n - 1 for n in runs.values()) == 0, "a clean stop caused redeliveries"
        counts = storage.counts("default")["default"]
        assert counts[JobState.READY] == 0
        assert counts[JobState.FAILED] == 0

    @pytest.mark.slow
    def test_two_workers_survive_a_broker_restart_and_scheduled_jobs_stay(
        self, private_rabbitmq: Any, tmp_path: Path
    ) -> None:
        """One restart of a private broker covers both: the drain and the 2-day job."""
        prefetch = 100
        options = RabbitOptions(url=private_rabbitmq.url, prefix="restart.", prefetch=prefetch)
        settings = {
            **BASE_SETTINGS,
            "storage": "rabbitmq",
            "rabbitmq": {
                "url": private_rabbitmq.url,
                "prefix": "restart.",
                "prefetch": prefetch,
                "reconnect_interval": 0.5,
                "publish_timeout": 120,
            },
            "lease": 30,
            "allowed_prefixes": ["rmqjobs", targets.__name__],
        }
        lines = tmp_path / "runs.txt"
        total, failing = 5000, {7, 1234, 4321}
        later = make_envelope("default", target=f"{targets.__name__}:append_line",
                              run_at=utcnow() + timedelta(days=2),
                              arguments={"path": str(lines), "line": "later"})  # fmt: skip
        envs = [
            make_envelope(
                "default",
                target="rmqjobs:fail_if",
                arguments={
                    "path": str(lines),
                    "line": str(i),
                    "fail": i in failing,
                    "seconds": 0.01,
                },
                retry=RetryPolicy(max_retries=0),
            )
            for i in range(total)
        ]
        with RabbitStorage(options) as producer:
            producer.add([later])
            for start in range(0, total, 1000):
                producer.add(envs[start : start + 1000])
        env = make_worker_env(settings_env(settings), (str(TESTS),))
        # not quiet: the INFO line "reconnected to RabbitMQ" is the proof of the disconnect
        with WorkerProcesses(env, cwd=tmp_path, quiet=False) as workers:
            procs = [workers.start("--workers", "4"), workers.start("--workers", "4")]
            assert wait_for(
                lambda: lines.exists() and len(lines.read_text().splitlines()) > 300, 120
            ), workers.log(0)
            restarted_at = len(lines.read_text().splitlines())
            private_rabbitmq.restart()
            assert len(lines.read_text().splitlines()) < total, "the drain ended before the restart"

            with RabbitStorage(options) as checker:
                expected = {str(i) for i in range(total)}

                def drained() -> bool:  # READY counts no delivered, unacked job: wait for runs
                    c = checker.counts("default")["default"]
                    ran = set(lines.read_text().splitlines())
                    return ran >= expected and c[JobState.FAILED] == len(failing)

                assert wait_for(drained, 240), checker.counts("default")
                workers.terminate_all(60)  # a clean stop writes the last acks first
                runs = Counter(lines.read_text().splitlines())
                assert set(runs) == expected, "a job was lost or ran early"
                duplicates = sum(n - 1 for n in runs.values())
                print(
                    f"\nbroker restart after {restarted_at} runs: {total} jobs, {duplicates} ran twice"
                )
                # only unacked deliveries come back: at most each worker's prefetch (+ in flight)
                assert duplicates <= 2 * prefetch + 16, f"{duplicates} jobs ran twice"
                failed = {r.envelope.arguments["line"] for r in checker.failed_jobs("default")}
                assert failed == {str(i) for i in failing}
                counts = checker.counts("default")["default"]
                assert counts[JobState.SCHEDULED] == 1, "the job 2 days ahead did not survive"
            for index, proc in enumerate(procs):
                log = workers.log(index)
                # aiormq logs the connection reset with a traceback; oddjob itself must not crash
                assert proc.returncode == 0, log
                assert "worker crashed" not in log, log
                assert "reconnected to RabbitMQ at" in log, log
