"""A small pool of pyodbc connections and the retry loop every operation runs through.

Connections run in autocommit mode: an operation that is one statement (or
one batch whose statements need not be atomic) is its own transaction and
costs one round trip, not three (begin, statement, commit). Operations whose
statements must commit together ask ``Database.run`` for ``atomic=True``: it
turns autocommit off for them and commits (or rolls back on error).
Statements that carry their own ``BEGIN``/``COMMIT TRANSACTION`` (with the
session's XACT_ABORT ON) are atomic in one round trip without it.
Transient failures (deadlock victim 1205, lock timeout 1222, lost
connection 08S01/08001, timeouts HYT00/HYT01, Azure SQL's throttling and
failover errors) are retried with bounded, jittered backoff for
``retry_timeout`` seconds, then raised as ``StorageUnavailable`` naming the
server and database, never the password.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pyodbc  # type: ignore[import-not-found,unused-ignore]  # its .pyi is not PEP 561 packaged

from oddjob_core.errors import ConfigError, StorageError, StorageUnavailable

from .odbc import describe, driver_of, scrub
from .options import SqlServerOptions
from .statements import session_setup

log = logging.getLogger("oddjob.sqlserver")

T = TypeVar("T")

#: SQLSTATEs worth retrying: the link broke, a timeout fired, or the server chose us as victim
TRANSIENT_SQLSTATES = frozenset(
    {"08S01", "08S02", "08001", "08003", "08004", "08007", "HYT00", "HYT01", "40001"}
)
#: SQL Server / FreeTDS error numbers worth retrying
TRANSIENT_NUMBERS = frozenset(
    {
        -2,  # timeout expired
        233,  # no process on the other end of the pipe
        1205,  # chosen as deadlock victim
        1222,  # lock request timeout (SET LOCK_TIMEOUT)
        4060,  # cannot open database (restoring, failover)
        10053,  # connection aborted
        10054,  # connection reset by peer
        10060,  # connection timed out
        10928,  # Azure SQL: resource limit reached
        10929,  # Azure SQL: too busy
        40143,  # Azure SQL: failover
        40197,  # Azure SQL: service error, reconfiguration
        40501,  # Azure SQL: service busy
        40613,  # Azure SQL: database not currently available
        49918,  # Azure SQL: not enough resources
        49919,
        49920,
        20003,  # FreeTDS: timeout
        20004,  # FreeTDS: read from the server failed
        20006,  # FreeTDS: write to the server failed
        20009,  # FreeTDS: server unavailable or does not exist
        20017,  # FreeTDS: unexpected EOF from the server
    }
)
#: after these the connection itself is unusable and must not go back to the pool
BROKEN_NUMBERS = frozenset({233, 10053, 10054, 10060, 20004, 20006, 20017})
#: the server is failing over or resuming (Azure SQL reconfiguration, serverless resume,
#: availability-group failover): retried for ``failover_timeout``, longer than other errors
FAILOVER_NUMBERS = frozenset({4060, 40197, 40501, 40613, 49918, 49919, 49920, 10928, 10929})

#: the driver's native error code: "(NNN)" closing a diagnostic record, i.e. followed by
#: the ODBC function "(SQLExecDirectW)", the next record "; [" or the end of the message;
#: a "(233)" inside the server's text (an object name, a value) is not an error code
_NUMBER = re.compile(r"\((-?\d+)\)(?=\s*(?:\(SQL\w+\)|;\s*\[|$))")
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE pyodbc puts first in ``args`` ('' when there is none)."""
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], str) and len(args[0]) == 5:
        return args[0]
    return ""


def error_numbers(exc: BaseException) -> set[int]:
    """Native error numbers in a driver message: '... deadlock victim ... (1205) (SQLExecDirectW)'."""
    return {int(n) for n in _NUMBER.findall(message(exc))}


def message(exc: BaseException) -> str:
    """The driver's message text (pyodbc: ``args[1]``)."""
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[1], str):
        return args[1]
    return str(exc)


def is_transient(exc: BaseException) -> bool:
    """True for failures another attempt (maybe on another connection) can get past."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, pyodbc.Error):
        return False
    return sqlstate(exc) in TRANSIENT_SQLSTATES or bool(error_numbers(exc) & TRANSIENT_NUMBERS)


def is_certificate_error(exc: BaseException) -> bool:
    """TLS to the server failed on its certificate (Driver 18 encrypts by default; a fresh
    SQL Server 2019/2022 or container has a self-signed one): retrying cannot help."""
    text = message(exc).lower()
    return "certificate verify failed" in text or ("ssl provider" in text and "certificate" in text)


def is_broken(exc: BaseException) -> bool:
    """True when the connection that raised ``exc`` must be thrown away."""
    state = sqlstate(exc)
    return state.startswith("08") or state == "HYT01" or bool(error_numbers(exc) & BROKEN_NUMBERS)


def is_missing_driver(exc: BaseException) -> bool:
    """unixODBC/Windows says the DRIVER or DSN named in the connection string does not exist."""
    text = message(exc)
    return sqlstate(exc) in {"IM002", "01000"} and (
        "Can't open lib" in text or "not found" in text or "Data source name" in text
    )


class PoolTimeout(Exception):
    """Every pooled connection stayed busy for the whole wait."""


class Pool:
    """At most ``size`` pyodbc connections, made on demand, reused LIFO."""

    def __init__(self, connect: Callable[[], pyodbc.Connection], size: int, wait: float) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[pyodbc.Connection] = []
        self._lock = threading.Lock()
        self._wait = wait
        self._closed = False

    @contextlib.contextmanager
    def connection(self, *, discard: bool = False) -> Iterator[pyodbc.Connection]:
        """A connection with no open transaction; rolled back (or discarded) when the block raises.

        ``discard``: close it afterwards instead of pooling it (a connection lent to
        a caller may carry their isolation level, SET options or temp tables).
        """
        if not self._slots.acquire(timeout=self._wait):
            raise PoolTimeout(f"no pooled connection became free within {self._wait:g} s")
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
            try:
                yield conn
            except BaseException as exc:
                if discard:
                    _close_quietly(conn)
                else:
                    self._after_error(conn, exc)
                raise
            with self._lock:
                if self._closed or discard:
                    _close_quietly(conn)
                else:
                    self._idle.append(conn)
        finally:
            self._slots.release()

    def _after_error(self, conn: pyodbc.Connection, exc: BaseException) -> None:
        if not is_broken(exc):
            try:
                conn.rollback()
                with self._lock:
                    if not self._closed:
                        self._idle.append(conn)
                        return
            except pyodbc.Error:
                pass
        _close_quietly(conn)

    def discard_idle(self) -> None:
        """After a lost connection the idle ones are likely dead too (server restart): drop them."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(conn)

    def close(self) -> None:
        """Close idle connections now and busy ones when they come back."""
        with self._lock:
            self._closed = True
        self.discard_idle()


def _close_quietly(conn: pyodbc.Connection) -> None:
    try:
        conn.close()
    except pyodbc.Error:  # pragma: no cover - already broken
        pass


def _once(conn: pyodbc.Connection, fn: Callable[[pyodbc.Cursor, bool], T], retried: bool) -> T:
    cursor = conn.cursor()
    try:
        return fn(cursor, retried)
    finally:
        cursor.close()


def _in_transaction(
    conn: pyodbc.Connection, fn: Callable[[pyodbc.Cursor, bool], T], retried: bool
) -> T:
    """``fn`` with autocommit off, committed; the connection goes back in autocommit mode."""
    conn.autocommit = False
    try:
        result = _once(conn, fn, retried)
        conn.commit()
    except BaseException:
        with contextlib.suppress(pyodbc.Error):
            conn.rollback()
            conn.autocommit = True
        raise
    conn.autocommit = True
    return result


class Database:
    """The pool plus the transient-error retry loop; every message names the target, no password."""

    def __init__(self, options: SqlServerOptions) -> None:
        self.options = options
        self._connection_string = options.odbc_connection_string()
        self.target = describe(self._connection_string)
        self._closed = threading.Event()
        self.pool = Pool(self.connect, options.pool_size, max(options.connect_timeout, 1.0) * 2)

    def scrub(self, text: str) -> str:
        """A driver message without the password."""
        return scrub(text, self._connection_string)

    def connect(self) -> pyodbc.Connection:
        """A new configured connection (autocommit on); ``ConfigError`` when the driver is missing."""
        try:
            conn = pyodbc.connect(
                self._connection_string,
                autocommit=True,
                timeout=max(1, round(self.options.connect_timeout)),
            )
        except pyodbc.Error as exc:
            if is_missing_driver(exc):
                raise self.missing_driver(exc) from None
            raise
        try:
            if self.options.query_timeout:
                conn.timeout = max(1, round(self.options.query_timeout))
            # SET LOCK_TIMEOUT 0 would mean "never wait"; our 0 means "no limit" (-1)
            conn.execute(session_setup(round(self.options.lock_timeout * 1000) or -1))
        except BaseException:
            _close_quietly(conn)
            raise
        return conn

    def missing_driver(self, exc: BaseException) -> ConfigError:
        """The driver named in the connection string is not installed: say which ones are."""
        installed = ", ".join(pyodbc.drivers()) or "none"
        named = driver_of(self._connection_string) or "(a DSN)"
        return ConfigError(
            f"ODBC driver {named} for {self.target} cannot be loaded "
            f"({self.scrub(message(exc))}); installed ODBC drivers: {installed}. Install "
            "Microsoft ODBC Driver 18 for SQL Server (packages msodbcsql18 + unixodbc) or "
            "FreeTDS (Debian/Ubuntu: apt-get install tdsodbc unixodbc) and set the sqlserver "
            "'driver' option (or DRIVER= in connection_string) to its name"
        )

    def run(self, what: str, fn: Callable[[pyodbc.Cursor, bool], T], *, atomic: bool = False) -> T:
        """Run ``fn(cursor, retried)``: each statement its own transaction, or with ``atomic``
        all of them in one, committed after ``fn`` returns (rolled back when it raises).

        Transient failures are retried on a (possibly new) connection until
        ``retry_timeout`` runs out. ``retried`` is true from the second attempt
        on: the previous attempt may have committed before its connection
        broke, so non-idempotent writes use it to recognise their own success.
        """
        started = time.monotonic()
        deadline = started + self.options.retry_timeout
        attempt = 0
        while True:
            try:
                with self.pool.connection() as conn:
                    return (
                        _in_transaction(conn, fn, attempt > 0)
                        if atomic
                        else _once(conn, fn, attempt > 0)
                    )
            except (pyodbc.Error, PoolTimeout) as exc:
                if is_certificate_error(exc):
                    raise self.untrusted_certificate(exc) from exc
                if not is_transient(exc):
                    raise self.error(what, exc) from exc
                if error_numbers(exc) & FAILOVER_NUMBERS:
                    deadline = max(deadline, started + self.options.failover_timeout)
                attempt += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed.is_set():
                    raise self.unavailable(what, exc, attempt, deadline - started) from exc
                if is_broken(exc):
                    self.pool.discard_idle()
                wait = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (attempt - 1), remaining)
                wait *= random.uniform(0.5, 1.0)
                log.warning(
                    "%s failed on %s (%s); retry %d in %.2f s",
                    what,
                    self.target,
                    self.scrub(message(exc)),
                    attempt,
                    wait,
                )
                self._closed.wait(wait)

    def untrusted_certificate(self, exc: BaseException) -> ConfigError:
        """The server's TLS certificate is not trusted here: a configuration error, not an outage."""
        return ConfigError(
            f"{self.target} presented a TLS certificate this machine does not trust "
            f"({self.scrub(message(exc).strip())}). Install a certificate from a trusted CA on "
            "the server (or trust its CA here), or, for a development server or container, set "
            "trust_server_certificate = true in the sqlserver options "
            "(TrustServerCertificate=yes in connection_string)"
        )

    def error(self, what: str, exc: BaseException) -> StorageError:
        """A non-transient failure: what, where, the driver's words (scrubbed)."""
        text = self.scrub(message(exc).strip())
        numbers = error_numbers(exc)
        hint = ""
        if 18456 in numbers or sqlstate(exc) == "28000":
            hint = "; check the sqlserver user and password options (or connection_string)"
        elif 208 in numbers:  # invalid object name
            hint = "; the tables are missing: run `oddjob sqlserver migrate` (or migrate_on_start)"
        return StorageError(f"{what} failed on {self.target}: {text}{hint}")

    def unavailable(
        self, what: str, exc: BaseException, attempts: int, budget: float
    ) -> StorageUnavailable:
        """The error users see when the server stays unreachable: target, cause and fix."""
        cause = self.scrub(message(exc).strip()) or type(exc).__name__
        fix = (
            "Check that SQL Server is running and reachable from here (host, port, firewall) "
            "and that the sqlserver options (server/port/database or connection_string) name it"
        )
        if isinstance(exc, PoolTimeout):
            fix += (
                f"; if it is, the pool (pool_size = {self.options.pool_size}) may be too small "
                "for this process's threads: raise pool_size"
            )
        return StorageUnavailable(
            f"cannot reach {self.target}: {what} failed {attempts} time(s) within "
            f"{budget:g} s; last error: {cause}. {fix}"
        )

    def close(self) -> None:
        """Stop retrying and close every pooled connection."""
        self._closed.set()
        self.pool.close()
