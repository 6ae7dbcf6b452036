"""Private servers for tests that restart or break their server: never the shared one.

A PostgreSQL cluster (``PrivatePostgres``) or the makings of a RabbitMQ node
(``rabbitmq_server``, ``rabbitmq_node_folder``) in a temp folder of their own,
on free ports of 127.0.0.1. As root, each runs as its service user
(``server_user``): PostgreSQL refuses root. ``private_server`` is the body of an
opt-in fixture (``ODDJOB_TEST_RESTARTS=1``): the plugins' restart tests and the
chaos runs share these.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from .services import service_unavailable

#: restart tests are opt-in (they start a server of their own: slow); ``.ci/run`` opts in
RESTARTS = "ODDJOB_TEST_RESTARTS"


class ServerUnavailable(RuntimeError):
    """The private server cannot be set up here (missing binaries, no user to run it as...)."""


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, up: bool, timeout: float) -> bool:
    """Wait until the port is open (``up``) or closed; False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port) == up:
            return True
        time.sleep(0.2)
    return False


def server_user(name: str) -> str | None:
    """The user to run a server as: ``name`` when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise ServerUnavailable(
            f"running as root and no '{name}' user to run a server as"
        ) from None
    return name


def postgres_bindir() -> Path:
    """The newest installed PostgreSQL's bin folder (no version is assumed), else ``PATH``'s."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.parent.name.split(".")],
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None or shutil.which("pg_ctl") is None:
        raise ServerUnavailable(
            "initdb/pg_ctl are not installed: cannot start a private PostgreSQL"
        )
    return Path(initdb).resolve().parent


class PrivatePostgres:
    """A throwaway PostgreSQL cluster: ``start``, ``stop(mode)``, ``restart(mode)``, ``close``.

    ``initdb`` runs at construction. ``extra_addresses`` are listened on and trusted
    besides 127.0.0.1 (the chaos runs' partitioned hosts connect over their own links).
    """

    name = "postgres"

    def __init__(self, extra_addresses: tuple[str, ...] = ()) -> None:
        self.addresses = ("127.0.0.1", *extra_addresses)
        self.bin = postgres_bindir()
        self.user = server_user("postgres")
        self.dir = Path(tempfile.mkdtemp(prefix="oddjob-test-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        if self.user is not None:
            shutil.chown(self.dir, self.user)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        if extra_addresses:
            with (self.data / "pg_hba.conf").open("a") as hba:
                for address in extra_addresses:
                    hba.write(f"host all all {address.rsplit('.', 1)[0]}.0/24 trust\n")
        self.dsn = self.dsn_at("127.0.0.1")

    def dsn_at(self, address: str) -> str:
        return f"postgresql://postgres@{address}:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        command = [str(self.bin / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={','.join(self.addresses)} "
            "-c fsync=off -c max_connections=200"
        )
        # the log file, else the server keeps our output pipe open
        log = str(self.dir / "server.log")
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "-t", "60", "start"
        )

    def pid(self) -> int:
        """The postmaster's process id (it changes with every restart)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clients cut, clean checkpoint) or ``immediate`` (a crash: recovery on start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        """Every client connection is cut; the data stays."""
        self.stop(mode)
        self.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def rabbitmq_server() -> Path:
    """The ``rabbitmq-server`` script itself (not the sbin wrapper that su's to the rabbitmq user)."""
    server = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if server.exists():
        return server
    found = shutil.which("rabbitmq-server")
    if found is None:
        raise ServerUnavailable("rabbitmq-server is not installed: cannot start a private broker")
    return Path(found)


def rabbitmq_node_folder(folder: Path, node: str, listeners: list[str]) -> dict[str, str]:
    """Write a node's config into ``folder`` and return the variables that keep it there.

    Its own cookie (``HOME``), config, plugins, data and logs: nothing of /etc/rabbitmq.
    ``listeners`` are ``host:port`` for AMQP.
    """
    config = [f"listeners.tcp.{i + 1} = {address}" for i, address in enumerate(listeners)]
    (folder / "rabbitmq.conf").write_text("\n".join([*config, "loopback_users = none"]) + "\n")
    (folder / "rabbitmq-env.conf").write_text("")
    (folder / "enabled_plugins").write_text("[].\n")
    return {
        "HOME": str(folder),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }


class _Server(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...


S = TypeVar("S", bound=_Server)


def private_server(make: Callable[[], S]) -> Iterator[S]:
    """The body of an opt-in fixture: skip unless ``ODDJOB_TEST_RESTARTS=1``, start, close after.

    A server that cannot be set up here skips locally and fails under ``CI=true``.
    """
    if os.environ.get(RESTARTS) != "1":
        pytest.skip(f"restart tests are opt-in: set {RESTARTS}=1 (they start a private server)")
    try:
        server = make()
    except ServerUnavailable as exc:
        service_unavailable(str(exc))
        raise  # unreachable: service_unavailable skips or fails
    try:
        server.start()
        yield server
    finally:
        server.close()


__all__ = [
    "RESTARTS",
    "PrivatePostgres",
    "ServerUnavailable",
    "free_port",
    "port_open",
    "postgres_bindir",
    "private_server",
    "rabbitmq_node_folder",
    "rabbitmq_server",
    "server_user",
    "wait_port",
]
