"""Private servers for fault injection: a PostgreSQL cluster and a RabbitMQ node of our own.

Both live in a temporary folder, listen on 127.0.0.1 on free ports, and are
stopped (and their folders removed) on exit. The cluster is the tests'
``oddjob_core.testing.servers.PrivatePostgres`` (as root it runs as the
``postgres`` user); the node here runs as ourselves and can also stop only its
broker app or be killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from oddjob_core.testing.servers import (
    PrivatePostgres,
    ServerUnavailable,
    free_port,
    rabbitmq_node_folder,
    rabbitmq_server,
    wait_port,
)


class PrivateRabbit:
    """A throwaway RabbitMQ node: its own node name, ports, cookie, config and mnesia folder."""

    name = "rabbitmq"

    def __init__(self, extra_addresses: tuple[str, ...] = ()) -> None:
        self.server = rabbitmq_server()
        self.ctl = self.server.parent / "rabbitmqctl"
        self.dir = Path(tempfile.mkdtemp(prefix="oddjob-chaos-rmq-"))
        self.port = free_port()
        self.node = f"oddjobchaos{os.getpid()}@localhost"
        listeners = [f"{address}:{self.port}" for address in ("127.0.0.1", *extra_addresses)]
        cookie = self.dir / ".erlang.cookie"
        cookie.write_text(f"oddjobchaos{os.getpid()}{time.time_ns()}")
        cookie.chmod(0o400)
        self.env = {
            **os.environ,
            **rabbitmq_node_folder(self.dir, self.node, listeners),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
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


__all__ = ["PrivatePostgres", "PrivateRabbit", "ServerUnavailable"]
