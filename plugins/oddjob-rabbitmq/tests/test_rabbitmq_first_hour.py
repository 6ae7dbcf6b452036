"""A new user's first hour on RabbitMQ, through the installed ``oddjob`` command (#19)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from oddjob_core.testing.cli import oddjob, project

URL = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
def rabbit_project(tmp_path: Path, prefix: str, make_storage: Any) -> Path:
    """A project folder whose oddjob.toml selects RabbitMQ on this test's prefix.

    ``make_storage`` skips when the broker is down and deletes the queue's topology after.
    """
    make_storage(queues=["default"])
    return project(
        tmp_path,
        config=(
            'storage = "rabbitmq"\nimports = ["myapp.jobs"]\n'
            f'[rabbitmq]\nurl = "{URL}"\nprefix = "{prefix}"\n'
        ),
    )


def test_burst_with_burst_wait_ends_while_a_job_waits_days_ahead(rabbit_project: Path) -> None:
    root = rabbit_project
    assert oddjob("enqueue", "myapp.jobs:hello", "--args", '["now"]', cwd=root).returncode == 0
    later = oddjob("enqueue", "myapp.jobs:hello", "--args", '["later"]', "--delay", "3d", cwd=root)
    assert later.returncode == 0, later.stderr
    start = time.monotonic()
    worker = oddjob("worker", "--burst", "--burst-wait", "2", "-v", cwd=root, timeout=90)
    elapsed = time.monotonic() - start
    assert worker.returncode == 0, worker.stderr
    assert "ok    myapp.jobs:hello" in worker.stderr
    assert elapsed < 60


def test_management_says_plainly_what_this_backend_can_list(rabbit_project: Path) -> None:
    root = rabbit_project
    job_id = oddjob("enqueue", "myapp.jobs:hello", "--args", '["x"]', cwd=root).stdout.strip()
    for command in (["jobs", "list"], ["jobs", "show", job_id], ["jobs", "cancel", job_id]):
        done = oddjob(*command, cwd=root)
        assert done.returncode == 1, command
        assert "use counts()" not in done.stderr
        assert "`oddjob queues` (jobs per queue and state)" in done.stderr
        assert "its own commands: `oddjob rabbitmq --help`" in done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
    counted = oddjob("queues", "--json", cwd=root)
    assert json.loads(counted.stdout)["default"]["ready"] == 1
    helped = oddjob("rabbitmq", "--help", cwd=root)
    assert "it cannot look up, list or cancel one waiting" in helped.stdout


def test_teardown_removes_the_queues_and_exchanges_of_a_prefix(
    rabbit_project: Path, prefix: str, make_storage: Any
) -> None:
    root = rabbit_project
    assert oddjob("enqueue", "myapp.jobs:hello", "--args", '["x"]', cwd=root).returncode == 0
    refused = oddjob("rabbitmq", "teardown", cwd=root, input_text="n\n")
    assert refused.returncode == 130  # not confirmed: nothing deleted
    assert "Aborted." in refused.stderr
    done = oddjob("rabbitmq", "teardown", "--prefix", prefix, "--yes", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "default: deleted" in done.stdout
    topology = make_storage().topology("default")
    assert not _exists_now(topology.work.name)
    assert not _exists_now(topology.delay_queues[0].name)


def _exists_now(queue: str) -> bool:
    """Ask the broker on a thread of its own (another test may leave a loop running here)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _exists(queue)).result(60)


async def _exists(queue: str) -> bool:
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel()
        try:
            await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return False
        return True
    finally:
        await connection.close()
