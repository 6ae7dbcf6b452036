"""Fixtures for tests against the real broker: a unique name prefix per test, deleted after.

The broker is ``$ODDJOB_TEST_RABBITMQ_URL`` (default amqp://guest:guest@127.0.0.1:5672/).
When it is down, the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from oddjob_rabbitmq import RabbitOptions, RabbitStorage

from oddjob_core.errors import StorageUnavailable
from oddjob_core.testing import service_unavailable
from oddjob_core.testing.servers import (
    free_port,
    port_open,
    private_server,
    rabbitmq_node_folder,
    rabbitmq_server,
    server_user,
)

URL = os.environ.get("ODDJOB_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

MakeStorage = Callable[..., RabbitStorage]


def connect(**overrides: Any) -> RabbitStorage:
    """A storage on the test broker, or skip (fail in CI) when it is down."""
    values: dict[str, Any] = {"url": URL, "connect_timeout": 5.0}
    values.update(overrides)
    try:
        return RabbitStorage(RabbitOptions(**values))
    except StorageUnavailable as exc:
        service_unavailable(f"RabbitMQ is not reachable: {exc}")
        raise


@pytest.fixture
def prefix() -> str:
    return f"oddjob-test-{secrets.token_hex(4)}."


@pytest.fixture
def make_storage(prefix: str) -> Iterator[MakeStorage]:
    """Make storages on this test's prefix; close them and delete every queue they used after."""
    made: list[RabbitStorage] = []

    def make(**overrides: Any) -> RabbitStorage:
        values: dict[str, Any] = {"prefix": prefix, "prefetch": 1000}
        values.update(overrides)
        instance = connect(**values)
        made.append(instance)
        return instance

    state: set[str] = set()
    state_queue = RabbitStorage._state_queue

    def recording(self: RabbitStorage, key_or_prefix: str) -> tuple[str, str]:
        name, head = state_queue(self, key_or_prefix)
        state.add(name)
        return name, head

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RabbitStorage, "_state_queue", recording)
        yield make
    used: set[str] = set()
    for instance in made:
        used |= instance.known_queues
        instance.close()
    if used:
        clean_up(prefix, used, state)


@pytest.fixture
def clean_prefix(prefix: str) -> Iterator[str]:
    """``prefix`` for worker processes: their default queue and schedule state deleted after."""
    yield prefix
    clean_up(prefix, {"default"})


def clean_up(prefix: str, queues: set[str], state: set[str] | None = None) -> None:
    """Delete what tests (and the worker processes they started) made on ``prefix``.

    The topology of ``queues``, the state documents' queues (``state``, plus the
    core schedules' own, which worker processes write) and the scheduler lease.
    """
    cleaner = connect(prefix=prefix)
    try:
        cleaner.delete_topology(sorted(queues))
        core = [f"{prefix}state.schedule-paused", f"{prefix}state.schedule-progress"]
        delete_queues(cleaner, sorted({*(state or ()), *core, f"{prefix}scheduler-lease"}))
    finally:
        cleaner.close()


def delete_queues(storage: RabbitStorage, names: list[str]) -> None:
    """Delete AMQP queues by name (missing ones are fine; one still held exclusively stays)."""

    async def go() -> None:
        for name in names:
            channel = await storage.connection.channel()
            try:
                raw = await channel.get_underlay_channel()
                await raw.queue_delete(name)
            except Exception:  # RESOURCE_LOCKED: a live connection holds the lease
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()

    storage.connection.call(go())


@pytest.fixture
def storage(make_storage: MakeStorage) -> RabbitStorage:
    return make_storage()


# -- a private broker for restart tests ---------------------------------------------------


class PrivateRabbit:
    """A throwaway RabbitMQ node on free ports, for tests that restart their broker.

    Never the shared broker: its own node name, data, logs, config and cookie in a
    temp folder, removed after. As root, it runs as the ``rabbitmq`` user.
    """

    def __init__(self) -> None:
        server = rabbitmq_server()
        self.user = server_user("rabbitmq")
        self.folder = Path(tempfile.mkdtemp(prefix="oddjob-test-rmq-"))
        self.port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        node = f"oddjob-test-{secrets.token_hex(4)}@localhost"
        variables = rabbitmq_node_folder(self.folder, node, [f"127.0.0.1:{self.port}"])
        if self.user is not None:
            for path in [self.folder, *self.folder.iterdir()]:
                shutil.chown(path, self.user)
        self.command = ["env", *(f"{k}={v}" for k, v in variables.items()), str(server)]
        if self.user is not None:
            self.command = ["runuser", "-u", self.user, "--", *self.command]
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 180) -> None:
        """Start the node and wait until it accepts AMQP connections."""
        self.starts += 1
        with (self.folder / f"server{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the private broker exited: {self.log()}")
            if port_open(self.port):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the private broker did not listen within {timeout:g} s: {self.log()}")

    def log(self) -> str:
        return (self.folder / f"server{self.starts}.log").read_text(errors="replace")

    def stop(self, timeout: float = 120) -> None:
        """A clean stop (SIGTERM to the node's process group); every connection is cut."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def restart(self) -> None:
        """Stop and start again on the same data: durable queues and messages survive."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def private_rabbitmq() -> Iterator[PrivateRabbit]:
    """A private broker started for this test (opt-in: ``ODDJOB_TEST_RESTARTS=1``), removed after."""
    yield from private_server(PrivateRabbit)
