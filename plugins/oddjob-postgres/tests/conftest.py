"""Fixtures for tests against the real PostgreSQL server: a fresh schema per test, dropped after.

The server is ``$ODDJOB_TEST_POSTGRES_DSN`` (default: 127.0.0.1:5432, database
``test``, user ``postgres``). When it is down, the tests skip locally and fail
under ``CI=true``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from oddjob_postgres import PostgresOptions, PostgresStorage

from oddjob_core.testing import service_unavailable
from oddjob_core.testing.servers import PrivatePostgres, private_server

DSN = os.environ.get("ODDJOB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def admin_connect() -> psycopg.Connection[Any]:
    """An autocommit connection for setting up and inspecting the database in tests."""
    try:
        return psycopg.connect(DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        service_unavailable(f"PostgreSQL is not reachable at {DSN}: {exc}")
        raise  # unreachable: service_unavailable skips or fails


@pytest.fixture
def dsn() -> str:
    return DSN


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[Any]]:
    with admin_connect() as conn:
        yield conn


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema name; the schema (created by the storage's migrations) is dropped after.

    Dropped on a new connection: a test may have restarted the server meanwhile.
    """
    admin_connect().close()  # skip early (or fail in CI) when the server is down
    name = f"oddjob_test_{secrets.token_hex(6)}"
    yield name
    with admin_connect() as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def make_options(schema: str) -> Callable[..., PostgresOptions]:
    """Options on the test schema; small pools, the machine is shared."""

    def make(**overrides: Any) -> PostgresOptions:
        values: dict[str, Any] = {
            "dsn": DSN,
            "schema": schema,
            "pool_min_size": 1,
            "pool_max_size": 4,
        }
        values.update(overrides)
        return PostgresOptions(**values)

    return make


@pytest.fixture
def storage(make_options: Callable[..., PostgresOptions]) -> Iterator[PostgresStorage]:
    instance = PostgresStorage(make_options())
    try:
        yield instance
    finally:
        instance.close()


# -- a private server for restart tests ---------------------------------------------------


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private cluster started for this test (opt-in: ``ODDJOB_TEST_RESTARTS=1``), removed after."""
    yield from private_server(PrivatePostgres)
