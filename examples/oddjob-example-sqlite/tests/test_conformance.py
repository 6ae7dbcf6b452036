"""The example SQLite storage passes oddjob's storage conformance suite.

This is all a backend needs to get every behaviour test: a fixture that makes
instances on one fresh, empty database, and a way to plant a corrupt job.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from oddjob_example_sqlite import SqliteOptions, SqliteStorage
from oddjob_example_sqlite.storage import DUE_WAITING, to_us

from oddjob_core.clock import utcnow
from oddjob_core.errors import PayloadError
from oddjob_core.model import JobQuery, JobState
from oddjob_core.storage import Storage
from oddjob_core.testing import StorageSuite, make_envelope
from oddjob_core.testing.recurring_suite import RecurringSuite
from oddjob_core.testing.storage_suite import StorageFactory


class TestExampleSqliteStorage(StorageSuite, RecurringSuite):
    @pytest.fixture
    def storage_factory(self, tmp_path: Path) -> StorageFactory:
        """Every call opens the same fresh database file, as a second worker process would."""
        options = SqliteOptions(path=str(tmp_path / "jobs.sqlite3"))
        return lambda: SqliteStorage(options)

    def inject_corrupt_job(self, storage: Storage, queue: str) -> None:
        """A due row whose envelope column is not JSON at all."""
        assert isinstance(storage, SqliteStorage)
        env, now = make_envelope(queue), to_us(utcnow())
        with sqlite3.connect(storage.path) as conn:
            conn.execute(
                "INSERT INTO jobs (id, queue, target, state, priority, run_at, created_at, "
                "updated_at, envelope) VALUES (?, ?, ?, 'ready', 0, ?, ?, ?, ?)",
                (str(env.id), queue, env.target, now - 1_000_000, now, now, '{"id": not json'),
            )

    overridden_tests = {}  # none: every suite test runs as written


def test_corrupt_job_is_shown_with_its_decode_error_and_not_requeued(tmp_path: Path) -> None:
    suite = TestExampleSqliteStorage()
    with SqliteStorage(SqliteOptions(path=str(tmp_path / "corrupt.sqlite3"))) as storage:
        suite.inject_corrupt_job(storage, "bad")
        assert storage.claim("bad", 10, 30.0, "w") == []
        [record] = storage.search(JobQuery(queue="bad")).jobs
        assert record.state is JobState.FAILED
        [error] = record.envelope.errors
        assert error.type == "oddjob_core.poison.CorruptJob"  # a PayloadError
        assert f"stored job {record.id} in {storage.path} cannot be decoded" in error.message
        with pytest.raises(PayloadError, match=r"cannot be requeued.*stays failed"):
            storage.requeue(record.id)


def test_claims_read_only_due_rows_of_the_waiting_index(tmp_path: Path) -> None:
    """Jobs scheduled days ahead must cost nothing per poll: the plan searches a run_at range."""
    with SqliteStorage(SqliteOptions(path=str(tmp_path / "plan.sqlite3"))) as storage:
        storage.add([make_envelope("plan", delay=86_400 * 3) for _ in range(50)])
        with sqlite3.connect(storage.path) as conn:
            plan = " | ".join(
                row[3]
                for row in conn.execute(
                    f"EXPLAIN QUERY PLAN {DUE_WAITING}", ("plan", to_us(utcnow()), 10)
                )
            )
        assert "USING INDEX jobs_waiting (queue=? AND run_at<?)" in plan, plan
        assert storage.claim("plan", 10, 30.0, "w") == []
