"""Real `oddjob worker` processes on SQL Server: a SIGKILLed worker's job reruns; throughput.

Needs ODDJOB_SQLSERVER_DSN (skips visibly otherwise).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from oddjob_sqlserver import SqlServerStorage

from oddjob_core.model import JobState
from oddjob_core.testing import WorkerProcesses, WorkerSuite, make_envelope, targets


@pytest.fixture
def worker_settings(dsn: str, schema: str) -> dict[str, Any]:
    """Workers on this test's schema (the suite adds the lease, poll interval and targets)."""
    sqlserver = {"connection_string": dsn, "schema": schema, "pool_size": 8, "retry_timeout": 60}
    return {"storage": "sqlserver", "sqlserver": sqlserver}


class TestSqlServerWorkers(WorkerSuite):
    def test_two_workers_drain_a_backlog_exactly_once(
        self,
        storage: SqlServerStorage,
        workers: WorkerProcesses,
        tmp_path: Path,
    ) -> None:
        """Throughput check: prints jobs/s (no timed assertion: the machine is shared)."""
        no_expiry = {"ODDJOB_LEASE": "30"}  # no lease may expire here: every job must run once
        lines = tmp_path / "runs.txt"
        total = 3000
        storage.add(
            [
                make_envelope(
                    "default",
                    target=f"{targets.__name__}:append_line",
                    arguments={"path": str(lines), "line": str(i)},
                )
                for i in range(total)
            ]
        )
        started = time.monotonic()
        procs = [workers.start("--workers", "4", "--burst", extra_env=no_expiry) for _ in range(2)]
        for proc in procs:
            proc.wait(300)
        elapsed = time.monotonic() - started
        for index, proc in enumerate(procs):
            assert proc.returncode == 0, workers.log(index)
        runs = Counter(lines.read_text().splitlines())
        assert set(runs) == {str(i) for i in range(total)}, "a job was lost"
        assert all(n == 1 for n in runs.values()), "a job ran twice without a crash"
        assert storage.counts("default")["default"] == {JobState.SUCCEEDED: total}
        print(
            f"\n{total} jobs by 2 worker processes x 4 threads in {elapsed:.1f} s "
            f"({total / elapsed:.0f} jobs/s, including process start-up)"
        )
