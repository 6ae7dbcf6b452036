"""Enqueues published from the caller's thread: each job stored once, durable, fallbacks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from oddjob_rabbitmq import RabbitStorage, local_publish
from oddjob_rabbitmq.codec import Codec
from oddjob_rabbitmq.local_publish import MAX_CONNECTIONS, WARM_UP, content_header
from oddjob_rabbitmq.messages import Messages
from pamqp import frame as amqp_frame
from pamqp import header as amqp_header
from pamqp.commands import Basic

from oddjob_core.clock import utcnow
from oddjob_core.testing import make_envelope, wait_for

MakeStorage = Callable[..., RabbitStorage]
LEASE, OWNER = 60.0, "test-worker"
URL = os.environ.get("ODDJOB_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def claim_ids(
    storage: RabbitStorage,
    queue: str,
    expected: int,
    timeout: float = 60.0,
    want: frozenset[str] = frozenset(),
) -> Counter[str]:
    """Claim until ``expected`` jobs (and all of ``want``) came or ``timeout``, then once more."""
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    while (sum(seen.values()) < expected or not want <= seen.keys()) and (
        time.monotonic() < deadline
    ):
        for claim in storage.claim(queue, 100, LEASE, OWNER):
            seen[str(claim.job.id)] += 1
    for claim in storage.claim(queue, 100, LEASE, OWNER):
        seen[str(claim.job.id)] += 1
    return seen


def test_threads_enqueuing_one_by_one_store_each_job_exactly_once(
    make_storage: MakeStorage,
) -> None:
    storage = make_storage(caller_connections=True)
    storage.add([make_envelope("many")])  # declares the queue
    ids: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def producer() -> None:
        try:
            start.wait(30)
            for _ in range(WARM_UP + 15):
                env = make_envelope("many")
                storage.add([env])
                with lock:
                    ids.append(str(env.id))
        except BaseException as exc:
            errors.append(exc)

    with ThreadPoolExecutor(8) as pool:
        for _ in range(8):
            pool.submit(producer)
    assert not errors
    # the pool grew in the background (one connect at a time), never past its bound
    assert wait_for(lambda: storage.caller_connections_opened >= 1, 30)
    assert storage.caller_connections_opened <= MAX_CONNECTIONS
    seen = claim_ids(make_storage(), "many", len(ids) + 1)
    assert all(seen[i] == 1 for i in ids), [i for i in ids if seen[i] != 1]
    assert sum(seen.values()) == len(ids) + 1


def test_caller_connections_off_uses_the_loop_thread(make_storage: MakeStorage) -> None:
    storage = make_storage(caller_connections=False)
    for _ in range(WARM_UP + 3):
        storage.add([make_envelope("off")])
    assert storage.caller_connections_opened == 0
    assert sum(claim_ids(storage, "off", WARM_UP + 3).values()) == WARM_UP + 3


def test_a_vanished_queue_is_declared_again_and_the_job_stored(make_storage: MakeStorage) -> None:
    """A return as unroutable on the caller's connection hands the job to the full path."""
    storage = make_storage(caller_connections=True)
    warm_up(storage, "gone")
    make_storage().delete_topology(["gone"])  # someone deletes the queue
    env = make_envelope("gone")
    returned = []
    publish = storage.here.publish

    def spy(outs: list[Any]) -> list[Any]:
        left = publish(outs)
        returned.extend(left)
        return left

    storage.here.publish = spy  # type: ignore[method-assign,assignment]
    storage.add([env])  # returned as unroutable, then redeclared and published again
    assert [o.job_id for o in returned] == [str(env.id)]  # the caller's path did not count it
    assert claim_ids(make_storage(), "gone", 1) == Counter({str(env.id): 1})


def test_a_returned_message_among_stored_ones_is_the_only_one_handed_on(
    make_storage: MakeStorage,
) -> None:
    """One batch on the caller's connection: the unroutable job goes back, the others are stored."""
    storage = make_storage(caller_connections=True)
    storage.declare(["here"])
    warm_up(storage, "here")
    outs = [
        storage.messages.job(storage.topology("here"), make_envelope("here"), utcnow())
        for _ in range(3)
    ]
    lost = storage.messages.job(storage.topology("nowhere"), make_envelope("nowhere"), utcnow())
    left = storage.here.publish([outs[0], lost, outs[1], outs[2]])
    assert left == [lost]
    assert storage.caller_connections_opened == 1
    seen = claim_ids(storage, "here", 3, want=frozenset(o.job_id for o in outs))
    assert all(seen[o.job_id] == 1 for o in outs)


def warm_up(storage: RabbitStorage, queue: str) -> None:
    """Enqueue on this thread until it publishes over a connection of its own."""
    with pytest.raises(RuntimeError):  # a loop left running here (e.g. by Playwright) hides it
        asyncio.get_running_loop()

    def own_connection_open() -> bool:  # a connect that timed out on a loaded machine is retried
        storage.add([make_envelope(queue)])
        return storage.caller_connections_opened >= 1

    assert wait_for(own_connection_open, 60, interval=0.1), (
        "the caller never got its own connection"
    )


def test_close_closes_the_callers_connections(make_storage: MakeStorage) -> None:
    storage = make_storage(caller_connections=True)
    done = threading.Event()

    def producer() -> None:
        for _ in range(WARM_UP + 2):  # the first declares the queue
            storage.add([make_envelope("closing")])
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    t.join(60)
    assert done.is_set()
    assert wait_for(lambda: storage.caller_connections_open == 1, 30)  # opened in the background
    storage.close()
    assert storage.caller_connections_open == 0


def test_short_lived_threads_reuse_one_pooled_connection(make_storage: MakeStorage) -> None:
    """A web server's request threads, one after another, share the pool's connection."""
    storage = make_storage(caller_connections=True)
    warm_up(storage, "reuse")
    published = []
    publish = storage.here.publish

    def spy(outs: list[Any]) -> list[Any]:
        left = publish(outs)
        published.append(len(outs) - len(left))
        return left

    storage.here.publish = spy  # type: ignore[method-assign,assignment]
    for _ in range(6):  # each request thread enqueues twice and ends
        t = threading.Thread(target=lambda: [storage.add([make_envelope("reuse")]) for _ in "ab"])
        t.start()
        t.join(60)
    assert published == [1] * 12  # every enqueue went over the pooled connection
    assert storage.caller_connections_opened == 1


CHILD = textwrap.dedent(
    """
    import sys, threading
    from oddjob_rabbitmq import RabbitOptions, RabbitStorage
    from oddjob_core.testing import make_envelope

    storage = RabbitStorage(RabbitOptions(url=sys.argv[1], prefix=sys.argv[2], caller_connections=True))
    out = threading.Lock()

    def produce():
        while True:
            env = make_envelope("durable")
            storage.add([env])
            with out:  # reported only once add returned
                sys.stdout.write(str(env.id) + "\\n")
                sys.stdout.flush()

    for _ in range(3):
        threading.Thread(target=produce, daemon=True).start()
    threading.Event().wait()
    """
)


def test_sigkill_right_after_enqueue_returns_loses_nothing(
    make_storage: MakeStorage, prefix: str
) -> None:
    storage = make_storage(caller_connections=True)
    storage.declare(["durable"])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, URL, prefix],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    reported: list[str] = []
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 120
        while len(reported) < 60 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            reported.append(line.strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert len(reported) >= 60, "the child stopped enqueuing"
    assert all(uuid.UUID(i) for i in reported)
    seen = claim_ids(storage, "durable", len(reported), timeout=60, want=frozenset(reported))
    missing = [i for i in reported if i not in seen]
    assert not missing  # every job whose enqueue returned is stored
    assert all(seen[i] == 1 for i in reported)


@pytest.mark.parametrize(
    "props",
    [
        Basic.Properties(content_type="application/json", delivery_mode=2, message_id="é" * 40),
        Basic.Properties(content_type="application/msgpack", delivery_mode=2, message_id="x"),
        Basic.Properties(content_type="a", delivery_mode=2, message_id="m", headers={"k": 1}),
        Basic.Properties(delivery_mode=2, message_id="m"),
        Basic.Properties(content_type="a", delivery_mode=2, message_id="m", priority=0),
        Basic.Properties(content_type="a", delivery_mode=2, message_id="m", app_id=""),
        Basic.Properties(content_type="a", delivery_mode=2, message_id="m", user_id="guest"),
    ],
)
def test_content_headers_are_encoded_as_pamqp_encodes_them(props: Basic.Properties) -> None:
    expected = amqp_frame.marshal(amqp_header.ContentHeader(0, 70000, props), 1)
    assert content_header(1, 70000, props) == expected


def test_a_jobs_content_header_is_encoded_without_pamqp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The properties every enqueue sets take the direct encoding (pamqp's is ~3 x the CPU)."""
    props = Messages(Codec("json"), levels=4).properties(make_envelope())
    expected = amqp_frame.marshal(amqp_header.ContentHeader(0, 300, props), 1)

    def refuse(*args: object) -> bytes:
        raise AssertionError("the job's properties went through pamqp's marshal")

    monkeypatch.setattr(local_publish.amqp_frame, "marshal", refuse)
    assert content_header(1, 300, props) == expected
