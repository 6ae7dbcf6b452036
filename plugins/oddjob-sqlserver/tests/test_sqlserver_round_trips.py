"""Round trips and session state per operation (#18 items 11a and 8), on a recording connection.

The recording connection (conftest) stands in for pyodbc's: it records each
statement with the connection's autocommit mode and the cursor's query
timeout, and each commit/rollback. No database is behind it, so these tests
prove what the plugin *sends*, not what a server does with it.

* 11a: an operation that is one statement (or one batch whose statements
  need not commit together) runs in autocommit mode: one round trip, no
  begin/commit. Several statements that must be atomic (a multi-chunk add,
  migrations, the retention sweep's applock + delete) run in one transaction.
* 8: migrations run on a cursor without the query timeout.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec
import pyodbc  # type: ignore[import-not-found,unused-ignore]
import pytest
from oddjob_sqlserver import SqlServerOptions, SqlServerStorage
from oddjob_sqlserver.database import Database
from oddjob_sqlserver.migrations import MIGRATIONS
from oddjob_sqlserver.names import Names
from oddjob_sqlserver.retention import RetentionPurge
from oddjob_sqlserver.statements import PURGE_BATCH, Statements

from oddjob_core.clock import utcnow
from oddjob_core.errors import LeaseLost, StorageError
from oddjob_core.model import AttemptError, Claim, JobQuery, JobState
from oddjob_core.testing import make_envelope
from oddjob_core.worker_registry import WorkerInfo


def _storage(**options: Any) -> SqlServerStorage:
    return SqlServerStorage(SqlServerOptions(retry_timeout=0.1, **options))


def _operations(storage: SqlServerStorage) -> dict[str, Callable[[], object]]:
    env = make_envelope("q")
    claim = Claim(job=env, token=str(uuid.uuid4()), owner="w", lease_expires_at=utcnow())
    error = AttemptError(attempt=1, type="builtins.RuntimeError", message="x", at=utcnow())
    later = utcnow() + timedelta(hours=1)
    now = utcnow()
    worker = WorkerInfo(
        id="w1", host="h", pid=1, queues={"q": 1}, in_flight=0, started_at=now,
        heartbeat_at=now, expires_at=later,
    )  # fmt: skip
    return {
        "add one chunk": lambda: storage.add([env, make_envelope("q")]),
        "claim": lambda: storage.claim("q", 10, 30.0, "w"),
        "complete": lambda: storage.complete(claim, 1),
        "complete_many": lambda: storage.complete_many([(claim, 1)]),
        "retry": lambda: storage.retry(claim, later, error),
        "fail": lambda: storage.fail(claim, error),
        "release": lambda: storage.release([claim]),
        "extend": lambda: storage.extend([claim], 30.0),
        "next_due": lambda: storage.next_due("q"),
        "get": lambda: storage.get(env.id),
        "search": lambda: storage.search(JobQuery(queue="q")),
        "counts": lambda: storage.counts(),
        "cancel": lambda: storage.cancel(env.id),
        "requeue": lambda: storage.requeue(env.id),
        "delete": lambda: storage.delete(env.id),
        "purge": lambda: storage.purge([JobState.SUCCEEDED]),
        "kv_read": lambda: storage.kv_read("schedule-paused/"),
        "kv_write": lambda: storage.kv_write({"a/b": b"1", "a/c": None}),
        "add_unique": lambda: storage.add_unique(msgspec.structs.replace(env, key="k")),
        "announce": lambda: storage.announce(worker),
        "withdraw": lambda: storage.withdraw("w1"),
        "workers": lambda: storage.workers(),
        "finished_per_minute": lambda: storage.finished_per_minute(utcnow()),
    }


NAMES_OF_OPERATIONS = [
    "add one chunk", "claim", "complete", "complete_many", "retry", "fail", "release", "extend",
    "next_due", "get", "search", "counts", "cancel", "requeue", "delete", "purge", "kv_read", "kv_write",
    "add_unique", "announce", "withdraw", "workers", "finished_per_minute",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES_OF_OPERATIONS)
def test_single_statement_operations_run_in_autocommit_mode(recorder: Any, name: str) -> None:
    storage = _storage()
    try:
        operation = _operations(storage)[name]
        mark = len(recorder.events)
        try:
            operation()
        except (LeaseLost, StorageError):
            pass  # nothing is stored behind the recording connection
        events = recorder.since(mark)
    finally:
        storage.close()
    executed = [e for e in events if not isinstance(e, tuple)]
    assert executed, f"{name} sent nothing"
    assert all(e.autocommit for e in executed), f"{name} ran a statement in a transaction"
    assert [e for e in events if isinstance(e, tuple)] == [], f"{name}: begin/commit round trips"


def test_a_multi_chunk_add_commits_once_in_one_transaction(recorder: Any) -> None:
    storage = _storage()
    try:
        mark = len(recorder.events)
        storage.add([make_envelope("q") for _ in range(1001)])  # two INSERT chunks
        events = recorder.since(mark)
    finally:
        storage.close()
    inserts = [e for e in events if not isinstance(e, tuple)]
    assert len(inserts) == 2
    assert not any(e.autocommit for e in inserts)
    assert [e for e in events if isinstance(e, tuple)] == [
        ("autocommit", False),
        ("commit", False),
        ("autocommit", True),
    ]


def test_the_retention_sweep_runs_in_a_transaction(recorder: Any) -> None:
    """The applock is owned by the transaction: the delete must run inside it."""
    storage = _storage()
    try:
        mark = len(recorder.events)
        RetentionPurge(storage).purge_finished((JobState.SUCCEEDED,), utcnow(), None)
        events = recorder.since(mark)
    finally:
        storage.close()
    [sweep] = [e for e in events if not isinstance(e, tuple)]
    assert "sp_getapplock" in sweep.sql
    assert f"DELETE TOP ({PURGE_BATCH})" in sweep.sql
    assert not sweep.autocommit
    assert ("commit", False) in events


def test_a_failed_transaction_is_rolled_back_and_the_connection_back_in_autocommit(
    recorder: Any,
) -> None:
    db = Database(SqlServerOptions(retry_timeout=0.1))

    def fail(cur: Any, _: bool) -> None:
        cur.execute("SELECT 1")
        raise pyodbc.ProgrammingError("42000", "[FreeTDS][SQL Server]Incorrect syntax (102)")

    try:
        with pytest.raises(StorageError):
            db.run("failing", fail, atomic=True)
        db.run("after", lambda cur, _: cur.execute("SELECT 2"))
    finally:
        db.close()
    tail = [e if isinstance(e, tuple) else e.autocommit for e in recorder.events]
    assert tail == [
        ("autocommit", False),  # the transaction
        False,  # SELECT 1, then the error
        ("rollback", False),
        ("autocommit", True),  # back in autocommit mode before the pool takes it back
        ("rollback", True),  # the pool's own rollback after an error (a no-op now)
        True,  # SELECT 2 on the same connection: autocommit
    ]


def test_a_lent_connection_has_autocommit_off(recorder: Any) -> None:
    storage = _storage()
    try:
        with storage.connection() as conn:
            assert conn.autocommit is False  # add_in_transaction refuses autocommit connections
    finally:
        storage.close()


def test_new_connections_open_in_autocommit_mode_and_commit_nothing(
    recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ``Database.connect`` on a recording connection: autocommit=True, no commit."""
    opened: list[dict[str, Any]] = []

    def connect(text: str, **kwargs: Any) -> Any:
        opened.append(kwargs)
        return recorder.connection()

    monkeypatch.undo()  # the real Database.connect
    monkeypatch.setattr(pyodbc, "connect", connect)
    db = Database(SqlServerOptions(query_timeout=30))
    try:
        conn = db.connect()
    finally:
        db.close()
    assert opened[0]["autocommit"] is True
    assert conn.timeout == 30
    [setup] = recorder.executed()
    assert "SET LOCK_TIMEOUT" in setup.sql
    assert [e for e in recorder.events if isinstance(e, tuple)] == []


def test_migrations_run_without_the_query_timeout(recorder: Any) -> None:
    """#18 item 8: an index build on a big table may take minutes; the 30 s timeout must not apply."""
    recorder.applied = [1, 2]
    recorder.timeout = 30  # what Database.connect sets from query_timeout
    storage = _storage()
    try:
        storage.next_due("q")  # an ordinary statement afterwards, on the same pooled connection
    finally:
        storage.close()
    ddl = {s for m in MIGRATIONS if m.version > 2 for s in m.statements(Names())}
    executed = recorder.executed()
    migrating = [e for e in executed if e.sql in ddl]
    assert len(migrating) == len(ddl)
    assert {e.timeout for e in migrating} == {0}
    assert executed[-1].sql == Statements(Names()).next_due
    assert executed[-1].timeout == 30  # the connection's own timeout is back for the rest
    assert executed[-1].connection is migrating[0].connection
