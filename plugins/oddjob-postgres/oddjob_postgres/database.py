"""The connection pool and the retry loop every statement runs through.

Transient failures (lost connection, server restarting, serialization
failure, deadlock, pool exhausted) are retried with bounded, jittered
backoff for ``retry_timeout`` seconds, then raised as ``StorageUnavailable``
naming host, port, database and user, never the password.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format
from psycopg_pool import ConnectionPool, PoolTimeout

from oddjob_core.backend.transient import TransientRetry
from oddjob_core.errors import StorageError, StorageUnavailable

from .options import PostgresOptions
from .rows import EncodedJson, EncodedJsonbBinaryDumper

log = logging.getLogger("oddjob.postgres")

T = TypeVar("T")

#: Failures worth retrying: the statement may succeed on another connection or a moment later.
TRANSIENT: tuple[type[BaseException], ...] = (psycopg.OperationalError,)

#: Connection failures no retry can fix: wrong database, user, password, host name or TLS.
PERMANENT = re.compile(
    r'FATAL:\s+(database|role) "[^"]*" does not exist|password authentication failed|'
    r"no pg_hba\.conf entry|authentication failed|SSL|certificate|sslmode|"
    r"could not translate host name|invalid connection option|invalid integer value",
    re.IGNORECASE,
)


class RawJsonLoader(Loader):
    """Load jsonb as the raw JSON bytes, so msgspec decodes straight into typed Structs."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


class RawJsonBinaryLoader(Loader):
    """The same for binary results: jsonb's binary form is a version byte, then the JSON text."""

    format = Format.BINARY

    def load(self, data: Buffer) -> bytes:
        return bytes(data[1:])


def describe(dsn: str) -> str:
    """``PostgreSQL at host:port, database d, user u``: the target, without any password."""
    try:
        params = pg_conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "PostgreSQL (unparsable dsn)"
    # libpq falls back to these environment variables and built-in defaults
    host = str(params.get("host") or os.environ.get("PGHOST") or "local socket")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    user = str(params.get("user") or os.environ.get("PGUSER") or "(current OS user)")
    db = str(params.get("dbname") or os.environ.get("PGDATABASE") or user)
    return f"PostgreSQL at {host}:{port}, database {db}, user {user}"


def scrub(text: str, dsn: str) -> str:
    """Remove the password of ``dsn`` from a driver message, should it ever appear."""
    try:
        password = pg_conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return text


def permanent_reason(exc: BaseException, dsn: str) -> str | None:
    """The server's reason when ``exc`` is a connection failure no retry can fix, else None."""
    text = scrub(str(exc).strip(), dsn)
    if not PERMANENT.search(text):
        return None
    _, fatal, after = text.partition("FATAL:")
    reason = after if fatal else text.rpartition(" failed: ")[2] or text
    return " ".join(reason.split())


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Every pooled connection: UTC times, jsonb as raw bytes both ways."""
    conn.execute("SET TIME ZONE 'UTC'")
    conn.adapters.register_loader("jsonb", RawJsonLoader)
    conn.adapters.register_loader("jsonb", RawJsonBinaryLoader)
    conn.adapters.register_dumper(EncodedJson, EncodedJsonbBinaryDumper)


class Database:
    """A psycopg pool of autocommit connections plus the transient-error retry loop."""

    def __init__(self, options: PostgresOptions) -> None:
        self.options = options
        self.target = describe(options.dsn)
        self._closed = threading.Event()
        self.retry = TransientRetry(
            target=self.target,
            timeout=options.retry_timeout,
            stopped=self._closed,
            errors=(psycopg.Error,),
            is_transient=lambda exc: isinstance(exc, TRANSIENT),
            failed=self._failed,
            unavailable=self.unavailable,
            describe=lambda exc: scrub(str(exc).strip(), options.dsn),
            log=log,
            recover=lambda exc: None if isinstance(exc, PoolTimeout) else self._discard_broken(),
        )
        self.check_connection()
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            options.dsn,
            min_size=options.pool_min_size,
            max_size=options.pool_max_size,
            kwargs={
                "autocommit": True,
                "application_name": options.application_name,
                "prepare_threshold": 5 if options.prepared_statements else None,
            },
            configure=_configure,
            timeout=options.connect_timeout,
            name=f"oddjob-{options.schema}",
            open=False,
        )
        self.pool.open(wait=False)

    def check_connection(self) -> None:
        """Connect once before the pool does: a setting no retry can fix fails now.

        A missing database, an unknown role, a wrong password or a TLS mismatch
        raises ``StorageError`` with the server's reason at once, instead of
        ``retry_timeout`` seconds of pool retries ending in a misleading hint. A
        server that is down or starting is left to the retry loop.
        """
        try:
            conn = psycopg.connect(
                self.options.dsn,
                autocommit=True,
                connect_timeout=max(1, round(self.options.connect_timeout)),
            )
        except psycopg.Error as exc:
            reason = permanent_reason(exc, self.options.dsn)
            if reason is None:
                return
            raise StorageError(
                f"cannot connect to {self.target}: {reason} (not retried: a wrong database, "
                "user, password or TLS setting does not fix itself); check the postgres 'dsn' "
                "option"
            ) from exc
        conn.close()

    def run(self, what: str, fn: Callable[[psycopg.Connection[Any], bool], T]) -> T:
        """Run ``fn(conn, retried)`` on a pooled connection, retrying transient failures.

        ``retried`` is true from the second attempt on: the previous attempt
        may have been applied before its connection broke, so non-idempotent
        writes use it to recognise their own earlier success.
        """

        def once(retried: bool) -> T:
            with self.pool.connection() as conn:
                return fn(conn, retried)

        return self.retry.run(what, once)

    def _failed(self, what: str, exc: BaseException) -> StorageError:
        return StorageError(
            f"{what} failed on {self.target}: {type(exc).__name__}: "
            f"{scrub(str(exc).strip(), self.options.dsn)}"
        )

    def unavailable(self, what: str, exc: BaseException, attempts: int) -> StorageUnavailable:
        """The error users see when the server stays unreachable: target, cause and fix."""
        cause = scrub(str(exc).strip(), self.options.dsn) or type(exc).__name__
        fix = (
            "Check that the server is running and reachable and that the postgres 'dsn' "
            "option points at it"
        )
        if isinstance(exc, PoolTimeout):
            fix += (
                f"; if it is, the pool (pool_max_size = {self.options.pool_max_size}) may be "
                "too small for this process's threads: raise pool_max_size"
            )
        return StorageUnavailable(
            f"{self.target} is unavailable: {what} failed {attempts} time(s) within "
            f"{self.options.retry_timeout:g} s; last error: {cause}. {fix}"
        )

    def _discard_broken(self) -> None:
        """After a lost connection the idle ones are likely dead too (server restart): check them."""
        try:
            self.pool.check()
        except Exception:  # pragma: no cover - best effort; the retry loop decides
            log.debug("pool check failed", exc_info=True)

    def close(self) -> None:
        """Close every pooled connection."""
        self._closed.set()
        self.pool.close(timeout=5.0)
