"""Fixtures: a live SQL Server when ``ODDJOB_SQLSERVER_DSN`` names one, a fresh schema per test.

``ODDJOB_SQLSERVER_DSN`` is an ODBC connection string, e.g.
``DRIVER={ODBC Driver 18 for SQL Server};SERVER=127.0.0.1,1433;DATABASE=test;UID=sa;PWD=...;TrustServerCertificate=yes``.
Without it every live test skips with that reason (also under CI: no SQL
Server can run on the CI machines, see docs/sqlserver.md).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyodbc  # type: ignore[import-not-found,unused-ignore]
import pytest
from oddjob_sqlserver import SqlServerOptions, SqlServerStorage

DSN_ENV = "ODDJOB_SQLSERVER_DSN"
SKIP_REASON = (
    f"set {DSN_ENV}=... (an ODBC connection string) to run against a real SQL Server; "
    "see docs/sqlserver.md"
)


def live_dsn() -> str:
    """The live server's connection string, or skip the test (visibly) when none is named."""
    dsn = os.environ.get(DSN_ENV, "")
    if not dsn:
        pytest.skip(SKIP_REASON)
    return dsn


@pytest.fixture
def dsn() -> str:
    return live_dsn()


def admin_connect(dsn: str) -> Any:
    """An autocommit connection for setting up and inspecting the database in tests."""
    return pyodbc.connect(dsn, autocommit=True, timeout=10)


def drop_installation(dsn: str, schema: str, prefix: str = "") -> None:
    """Drop oddjob's tables of ``schema``/``prefix`` and the schema itself when it is empty."""
    conn = admin_connect(dsn)
    try:
        for table in ("jobs", "workers", "kv", "schema_migrations"):
            table = prefix + table
            conn.execute(f"DROP TABLE IF EXISTS [{schema}].[{table}]")
        if schema != "dbo":
            conn.execute(
                f"IF SCHEMA_ID(N'{schema}') IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM sys.objects WHERE schema_id = SCHEMA_ID(N'{schema}')) "
                f"DROP SCHEMA [{schema}]"
            )
    finally:
        conn.close()


@pytest.fixture
def admin(dsn: str) -> Callable[[], Any]:
    """Open an autocommit connection to the live server (close it yourself)."""
    return lambda: admin_connect(dsn)


@pytest.fixture
def drop(dsn: str) -> Callable[..., None]:
    """``drop(schema, prefix="")``: remove an installation made by a test."""
    return lambda schema, prefix="": drop_installation(dsn, schema, prefix)


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    """A fresh schema name; its tables (created by the migrations) are dropped after the test."""
    name = f"oddjob_test_{secrets.token_hex(5)}"
    yield name
    drop_installation(dsn, name)


@pytest.fixture
def make_options(dsn: str, schema: str) -> Callable[..., SqlServerOptions]:
    """Options on the test schema; small pools (the machine is shared), quick give-up."""

    def make(**overrides: Any) -> SqlServerOptions:
        values: dict[str, Any] = {"connection_string": dsn, "schema": schema, "pool_size": 4}
        values.update(overrides)
        return SqlServerOptions(**values)

    return make


@pytest.fixture
def storage(make_options: Callable[..., SqlServerOptions]) -> Iterator[SqlServerStorage]:
    instance = SqlServerStorage(make_options())
    try:
        yield instance
    finally:
        instance.close()


# -- a recording connection: what the plugin sends, and how (no database behind it) ----------


class RecordingCursor:
    """A pyodbc cursor stand-in: records each statement, the parameters and the session state."""

    def __init__(self, recorder: Recorder, connection: RecordingConnection) -> None:
        self.recorder = recorder
        self.connection = connection  # pyodbc cursors know their connection (driver, timeout)
        self.timeout = connection.timeout  # pyodbc: a cursor takes the connection's at creation
        self.rows: list[tuple[Any, ...]] = []
        self.description: Any = None
        self.rowcount = 0

    def execute(self, sql: str, *params: Any) -> RecordingCursor:
        from oddjob_sqlserver.names import Names
        from oddjob_sqlserver.statements import Statements

        if len(params) == 1 and isinstance(params[0], list | tuple):
            params = tuple(params[0])
        self.recorder.sent.append((sql, params))
        self.recorder.events.append(
            Executed(sql, params, self.connection.autocommit, self.timeout, self.connection)
        )
        answers = {  # the schema is at recorder.applied; every other statement finds nothing
            "migrations_table_exists": [(1,)],
            "applied_versions": [(v,) for v in self.recorder.applied],
        }
        st = Statements(Names())
        self.rows = next((rows for name, rows in answers.items() if sql == getattr(st, name)), [])
        if "EXEC @result = sp_getapplock" in sql:  # the migration lock: granted
            self.rows = [(0,)]
        self.description = [("c",)] if self.rows else None
        return self

    def setinputsizes(self, sizes: Any) -> None:
        """Parameter declarations (nvarchar(max) on Microsoft's drivers) change no marker count."""

    def executemany(self, sql: str, rows: Any) -> None:
        for params in rows:
            self.execute(sql, params)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def __iter__(self) -> Any:
        return iter(self.rows)

    def nextset(self) -> bool:
        return False

    def close(self) -> None:
        pass


class RecordingConnection:
    """A pyodbc connection stand-in (FreeTDS by its driver name); records commits and modes."""

    def __init__(self, recorder: Recorder, timeout: int = 0) -> None:
        self.recorder = recorder
        self.timeout = timeout
        self._autocommit = True  # as Database.connect opens it

    @property
    def autocommit(self) -> bool:
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        self.recorder.events.append(("autocommit", value))
        self._autocommit = value

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self.recorder, self)

    def getinfo(self, what: Any) -> str:
        return "libtdsodbc.so"  # FreeTDS: the parameter declarations pyodbc makes by default

    def execute(self, sql: str, *params: Any) -> RecordingCursor:
        return self.cursor().execute(sql, *params)

    def commit(self) -> None:
        self.recorder.events.append(("commit", self._autocommit))

    def rollback(self) -> None:
        self.recorder.events.append(("rollback", self._autocommit))

    def close(self) -> None:
        pass


@dataclass
class Executed:
    """One statement as the recording connection saw it."""

    sql: str
    params: tuple[Any, ...]
    autocommit: bool  # the connection's mode when it ran
    timeout: int  # the cursor's query timeout (0: none)
    connection: RecordingConnection


@dataclass
class Recorder:
    """What ``recorder`` collected: (sql, params) pairs and every event in order."""

    sent: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    applied: list[int] = field(default_factory=list)  # migrations the "schema" has
    timeout: int = 0  # the query timeout new connections get

    def executed(self) -> list[Executed]:
        return [e for e in self.events if isinstance(e, Executed)]

    def since(self, mark: int) -> list[Any]:
        return self.events[mark:]

    def connection(self) -> RecordingConnection:
        """A new recording connection (what the patched ``Database.connect`` returns)."""
        return RecordingConnection(self, self.timeout)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """``Database.connect`` returns recording connections; the schema is up to date."""
    from oddjob_sqlserver.database import Database
    from oddjob_sqlserver.migrations import LATEST

    found = Recorder(applied=[LATEST])

    monkeypatch.setattr(Database, "connect", lambda self: found.connection())
    return found
