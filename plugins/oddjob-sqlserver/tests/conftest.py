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
        for table in (f"{prefix}jobs", f"{prefix}schema_migrations"):
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
