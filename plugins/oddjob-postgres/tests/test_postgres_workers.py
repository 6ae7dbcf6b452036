"""Real worker processes on PostgreSQL: a SIGKILLed worker's job reruns; a server restart loses nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from oddjob_postgres import PostgresStorage

from oddjob_core.model import JobState
from oddjob_core.testing import WorkerProcesses, WorkerSuite, make_envelope, targets, wait_for
from oddjob_core.testing.schedule_suite import ScheduleWorkerSuite


@pytest.fixture
def worker_settings(dsn: str, schema: str) -> dict[str, Any]:
    """Workers on this test's schema (the suite adds the lease, poll interval and targets)."""
    postgres = {"dsn": dsn, "schema": schema, "pool_max_size": 6, "retry_timeout": 60}
    return {"storage": "postgres", "postgres": postgres}


class TestPostgresWorkers(WorkerSuite, ScheduleWorkerSuite):
    @pytest.mark.slow
    def test_two_workers_survive_a_server_restart_without_losing_jobs(
        self,
        storage: PostgresStorage,
        workers: WorkerProcesses,
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
                "default",
                target=f"{targets.__name__}:append_line",
                # 10 ms each: 8 threads need >= 6 s, so the restart lands mid-drain
                # however fast the workers get
                arguments={"path": str(lines), "line": str(i), "seconds": 0.01},
            )
            for i in range(total)
        ]
        storage.add(envs)
        procs = [workers.start("--workers", "4"), workers.start("--workers", "4")]
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

        # a fresh pool: the fixture's died with the server
        checker = PostgresStorage(make_options())
        try:

            def all_done() -> bool:
                counts = checker.counts("default").get("default", {})
                return counts.get(JobState.SUCCEEDED, 0) == total

            assert wait_for(all_done, 240), checker.counts()
        finally:
            checker.close()
        workers.terminate_all(60)
        runs = Counter(lines.read_text().splitlines())
        assert set(runs) == {str(i) for i in range(total)}, "a job was lost"
        duplicates = sum(n - 1 for n in runs.values())
        print(f"\nrestart after {restarted_at} runs: {total} jobs, {duplicates} duplicate run(s)")
        for index in range(len(procs)):
            log = workers.log(index)
            assert "Traceback" not in log, log
