"""Private servers for fault injection: a PostgreSQL cluster and a RabbitMQ node of our own.

Both live in a temporary folder, listen on 127.0.0.1 on free ports, and are
stopped (and their folders removed) on exit. PostgreSQL refuses to run as
root: when we are root, the cluster runs as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


class ServerUnavailable(RuntimeError):
    """The private server could not be set up here (missing binaries, no user...)."""


class PrivatePostgres:
    """A throwaway PostgreSQL cluster: ``start``, ``stop(mode)``, ``restart(mode)``."""

    name = "postgres"

    def __init__(self, extra_addresses: tuple[str, ...] = ()) -> None:
        self.addresses = ("127.0.0.1", *extra_addresses)
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found and shutil.which("initdb") is None:
            raise ServerUnavailable("no initdb found (/usr/lib/postgresql/*/bin or PATH)")
        self.bin = Path(found[-1]).parent if found else Path(str(shutil.which("initdb"))).parent
        self.dir = Path(tempfile.mkdtemp(prefix="oddjob-chaos-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise ServerUnavailable("running as root and no 'postgres' user") from None
            self._user = "postgres"
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        if extra_addresses:  # the partition scenario's hosts connect over their own links
            with (self.data / "pg_hba.conf").open("a") as hba:
                for address in extra_addresses:
                    hba.write(f"host all all {address.rsplit('.', 1)[0]}.0/24 trust\n")
        self.dsn = self.dsn_at("127.0.0.1")

    def dsn_at(self, address: str) -> str:
        return f"postgresql://postgres@{address}:{self.port}/postgres"

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / tool), *args]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={','.join(self.addresses)} "
            "-c fsync=off "
            "-c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clients cut, clean checkpoint) or ``immediate`` (a crash: recovery on start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                  check=False)  # fmt: skip

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRabbit:
    """A throwaway RabbitMQ node: its own node name, ports, cookie, config and mnesia folder."""

    name = "rabbitmq"

    def __init__(self, extra_addresses: tuple[str, ...] = ()) -> None:
        base = Path("/usr/lib/rabbitmq/bin")
        server = base / "rabbitmq-server"
        if not server.exists():
            found = shutil.which("rabbitmq-server")
            if found is None:
                raise ServerUnavailable("no rabbitmq-server found")
            server = Path(found)
            base = server.parent
        self.server, self.ctl = server, base / "rabbitmqctl"
        self.dir = Path(tempfile.mkdtemp(prefix="oddjob-chaos-rmq-"))
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"oddjobchaos{os.getpid()}@localhost"
        listeners = [f"listeners.tcp.{i + 1} = {address}:{self.port}"
                     for i, address in enumerate(("127.0.0.1", *extra_addresses))]  # fmt: skip
        (self.dir / "rabbitmq.conf").write_text("\n".join(listeners) + "\nloopback_users = none\n")
        (self.dir / "env.conf").write_text("")
        (self.dir / "enabled_plugins").write_text("[].\n")
        cookie = self.dir / ".erlang.cookie"
        cookie.write_text(f"oddjobchaos{os.getpid()}{time.time_ns()}")
        cookie.chmod(0o400)
        self.env = {
            **os.environ,
            "HOME": str(self.dir),  # the Erlang cookie, ours alone
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "env.conf"),  # not /etc/rabbitmq's
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.url = self.url_at("127.0.0.1")
        self._proc: subprocess.Popen[bytes] | None = None

    def url_at(self, address: str) -> str:
        return f"amqp://guest:guest@{address}:{self.port}/"

    def start(self, timeout: float = 120.0) -> None:
        out = (self.dir / "server.out").open("ab")
        self._proc = subprocess.Popen(
            [str(self.server)], env=self.env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        if not wait_port(self.port, True, timeout):
            raise ServerUnavailable(f"private RabbitMQ did not come up; see {self.dir}/server.out")
        self.ctl_call("await_startup")

    def ctl_call(self, *args: str) -> None:
        subprocess.run([str(self.ctl), "-n", self.node, *args], env=self.env,
                       capture_output=True, timeout=120, check=False)  # fmt: skip

    def stop_app(self) -> None:
        """The broker stops, the Erlang node stays (an outage clients see as refused)."""
        self.ctl_call("stop_app")

    def start_app(self) -> None:
        self.ctl_call("start_app")
        wait_port(self.port, True, 120)

    def kill(self) -> None:
        """kill -9 of the whole node (its process group)."""
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait(30)
            self._proc = None
        wait_port(self.port, False, 30)

    def stop(self) -> None:
        self.ctl_call("stop")
        if self._proc is not None:
            try:
                self._proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def restart(self, mode: str = "kill") -> None:
        if mode == "kill":
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
