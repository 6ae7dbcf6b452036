"""Fixtures for tests against the real PostgreSQL server: a fresh schema per test, dropped after.

The server is ``$ODDJOB_TEST_POSTGRES_DSN`` (default: 127.0.0.1:5432, database
``test``, user ``postgres``). When it is down, the tests skip locally and fail
under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from oddjob_postgres import PostgresOptions, PostgresStorage

from oddjob_core.testing import service_unavailable

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

#: restart tests are opt-in (they start a server of their own: slow); ``.ci/run`` opts in
RESTARTS = "ODDJOB_TEST_RESTARTS"


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, for tests that restart their server.

    Never the shared server: the cluster lives in its own temp folder and is removed
    after. The binaries are the newest installed (``/usr/lib/postgresql/<version>/bin``,
    else those on ``PATH``); as root, the server runs as the ``postgres`` user.
    """

    def __init__(self) -> None:
        self.bindir = _postgres_bindir()
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                service_unavailable("running as root and no 'postgres' user to run a server as")
            self.user = "postgres"
        self.folder = Path(tempfile.mkdtemp(prefix="oddjob-test-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        if self.user is not None:
            shutil.chown(self.folder, self.user)
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 180) -> None:
        command = [str(self.bindir / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        """initdb, then start the server and wait until it accepts connections."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def pid(self) -> int:
        """The postmaster's process id (it changes with every restart)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def restart(self) -> None:
        """A fast restart: every client connection is cut, the data stays."""
        log = str(self.folder / "server.log")  # else the server keeps our output pipe open
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def _postgres_bindir() -> Path:
    """The newest installed server's bin folder (no version is assumed)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.parent.name.split(".")],
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None or shutil.which("pg_ctl") is None:
        service_unavailable("initdb/pg_ctl are not installed: cannot start a private PostgreSQL")
        raise AssertionError("unreachable")
    return Path(initdb).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private server started for this test (opt-in: ``ODDJOB_TEST_RESTARTS=1``), removed after."""
    if os.environ.get(RESTARTS) != "1":
        pytest.skip(f"restart tests are opt-in: set {RESTARTS}=1 (they start a private server)")
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()
