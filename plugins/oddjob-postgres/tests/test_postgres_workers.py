"""Real worker processes on PostgreSQL: a SIGKILLed worker's job reruns; a server restart loses nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from oddjob_postgres import PostgresOptions, PostgresStorage

from oddjob_core.model import JobState
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


@pytest.fixture
def worker_settings(dsn: str, schema: str) -> dict[str, Any]:
    """Workers on this test's schema (the suite adds the lease, poll interval and targets)."""
    postgres = {"dsn": dsn, "schema": schema, "pool_max_size": 6, "retry_timeout": 60}
    return {"storage": "postgres", "postgres": postgres}


class TestPostgresWorkers(WorkerSuite, ScheduleWorkerSuite):
    @pytest.mark.slow
    def test_two_workers_survive_a_server_restart_without_losing_jobs(
        self, private_postgres: Any, tmp_path: Path
    ) -> None:
        """Restart the private server mid-drain: every job runs, few twice, both workers reconnect."""
        options = PostgresOptions(dsn=private_postgres.dsn, schema="oddjob", pool_max_size=4)
        settings = {
            **BASE_SETTINGS,
            "storage": "postgres",
            "postgres": {"dsn": private_postgres.dsn, "schema": "oddjob", "retry_timeout": 60},
        }
        lines = tmp_path / "runs.txt"
        total = 5000
        envs = [
            make_envelope(
                "default",
                target=f"{targets.__name__}:append_line",
                # 10 ms each: 8 threads need >= 6 s, so the restart lands mid-drain
                # however fast the workers get
                arguments={"path": str(lines), "line": str(i), "seconds": 0.01},
            )
            for i in range(total)
        ]
        with PostgresStorage(options) as producer:
            producer.add(envs)
        env = make_worker_env(settings_env(settings))
        with WorkerProcesses(env, cwd=tmp_path) as workers:
            procs = [workers.start("--workers", "4"), workers.start("--workers", "4")]
            assert wait_for(
                lambda: lines.exists() and len(lines.read_text().splitlines()) > 300, 120
            ), workers.log(0)
            before = private_postgres.pid()
            private_postgres.restart()
            assert private_postgres.pid() != before, "the server did not restart"
            restarted_at = len(lines.read_text().splitlines())
            assert restarted_at < total, "the drain finished before the restart: nothing was tested"

            with PostgresStorage(options) as checker:

                def all_done() -> bool:
                    counts = checker.counts("default").get("default", {})
                    return counts.get(JobState.SUCCEEDED, 0) == total

                assert wait_for(all_done, 240), checker.counts()
            workers.terminate_all(60)
            runs = Counter(lines.read_text().splitlines())
            assert set(runs) == {str(i) for i in range(total)}, "a job was lost"
            duplicates = sum(n - 1 for n in runs.values())
            print(
                f"\nrestart after {restarted_at} runs: {total} jobs, {duplicates} duplicate run(s)"
            )
            # only jobs whose success could not be written run again: at most what the
            # two workers held (8 threads, claims of up to 2 x workers each) at the restart
            assert duplicates <= 64, f"{duplicates} jobs ran twice"
            for index, proc in enumerate(procs):
                log = workers.log(index)
                assert proc.returncode == 0, log
                assert "Traceback" not in log, log
                # the worker lost its connections to the restart (and went on: every job ran)
                assert "terminating connection due to administrator command" in log, log
