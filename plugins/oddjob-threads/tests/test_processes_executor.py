"""The processes executor: the execution conformance suite, plus what only processes can do."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from oddjob_threads.processes import ProcessesExecutor

from oddjob_core import Oddjob, call
from oddjob_core.model import JobState, RetryPolicy
from oddjob_core.testing import ExecutorSuite, targets
from oddjob_core.testing.executor_suite_base import AppFactory, ExecutorSuiteBase


class TestProcessesExecutor(ExecutorSuite):
    executor_name = "processes"
    records_across_processes = True


class TestProcessesExecutorOnFilesystem(ExecutorSuite):
    executor_name = "processes"
    records_across_processes = True

    @pytest.fixture
    def storage_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"storage": "filesystem", "filesystem": {"path": str(tmp_path / "store")}}


class TestWhatOnlyProcessesDo(ExecutorSuiteBase):
    """Timeouts kill, crashes are retried, processes are recycled."""

    executor_name = "processes"
    records_across_processes = True

    def test_a_job_past_its_timeout_is_killed_with_its_process(
        self, app_factory: AppFactory
    ) -> None:
        """``sleep_for`` ignores cancellation: only killing its process stops it."""
        app = app_factory(processes={"kill_grace": 0.2})
        job_id = app.options(timeout=0.5, retry=RetryPolicy(max_retries=0)).enqueue(
            targets.sleep_for, "hung", 60.0
        )
        started = time.monotonic()
        app.run_worker(workers=1, burst=True, handle_signals=False)
        assert time.monotonic() - started < 20
        record = app.get(job_id)
        assert record.state is JobState.FAILED
        assert record.envelope.errors[0].type == "oddjob_core.retrying.JobTimeout"
        assert "killed" in record.envelope.errors[0].message
        assert targets.SEEN["hung"] == ["start"]

    def test_a_process_dying_mid_job_loses_nothing_and_is_replaced(
        self, app_factory: AppFactory
    ) -> None:
        app = app_factory()
        job_id = app.enqueue(targets.die_on_first_attempt, "crash")
        app.run_worker(workers=1, burst=True, burst_wait=1.0, handle_signals=False)
        record = app.get(job_id)
        assert record.state is JobState.SUCCEEDED
        assert record.envelope.attempts == 2
        assert record.envelope.errors[0].type.endswith("ProcessDied")
        (first, pid1), (second, pid2) = targets.SEEN["crash"]
        assert (first, second) == (1, 2)
        assert pid1 != pid2

    def test_max_jobs_per_process_recycles_processes(self, app_factory: AppFactory) -> None:
        app = app_factory(processes={"max_jobs_per_process": 2})
        app.enqueue_many([call(targets.process_id, "pids") for _ in range(6)])
        app.run_worker(workers=1, burst=True, handle_signals=False)
        pids = targets.SEEN["pids"]
        assert len(pids) == 6
        assert len(set(pids)) == 3
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]


def test_a_queue_without_workers_gets_one_process_per_cpu() -> None:
    app = Oddjob(storage="memory", executor="processes", queues={"sized": {"workers": 3}})
    executor = app.make_executor()
    assert isinstance(executor, ProcessesExecutor)
    assert executor.workers_for("default") == (os.cpu_count() or 1)
    assert executor.workers_for("sized") == 3  # the queue's own table wins
    assert executor.workers_for("default", 5) == 5
    app.close()
    app = Oddjob(storage="memory", executor="processes", processes={"processes": 2})
    executor = app.make_executor()
    assert isinstance(executor, ProcessesExecutor)
    assert executor.workers_for("default") == 2
    app.close()
