"""RabbitMQ-specific behaviour against the real broker: errors, delays, poison jobs, channel loss."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from oddjob_rabbitmq import RabbitOptions, RabbitStorage
from oddjob_rabbitmq.acks import ack_plan
from oddjob_rabbitmq.connection import CONSUMER_TIMEOUT_HELP, describe
from oddjob_rabbitmq.urls import redact, scrub
from pamqp import commands as spec

from oddjob_core.clock import utcnow
from oddjob_core.errors import (
    ConfigError,
    LeaseLost,
    StorageError,
    StorageUnavailable,
    UnsupportedOperation,
)
from oddjob_core.model import JobQuery, JobState, RetryPolicy
from oddjob_core.testing import make_envelope
from oddjob_core.testing.suite_base import drain

MakeStorage = Callable[..., RabbitStorage]
LEASE, OWNER = 30.0, "test-worker"


def publish_raw(storage: RabbitStorage, amqp_queue: str, body: bytes, content_type: str) -> None:
    async def go() -> None:
        channel = await storage.connection.publisher_channel(float("inf"))
        await channel.basic_publish(
            body,
            routing_key=amqp_queue,
            properties=spec.Basic.Properties(content_type=content_type, delivery_mode=2),
            mandatory=True,
        )

    storage.connection.call(go(), 10)


# -- errors name the thing and never the password ------------------------------------------


def test_urls_are_redacted() -> None:
    url = "amqp://app:s3cr3t@rabbit.example:5672/prod"
    assert redact(url) == "amqp://app@rabbit.example:5672/prod"
    assert "s3cr3t" not in scrub(f"failed for {url} with password s3cr3t", url)


def test_unreachable_broker_is_named_without_the_password() -> None:
    with pytest.raises(StorageUnavailable) as caught:
        RabbitStorage(RabbitOptions(url="amqp://app:s3cr3t@127.0.0.1:1/", connect_timeout=2))
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "s3cr3t" not in message


def test_wrong_password_is_not_echoed(make_storage: MakeStorage) -> None:
    make_storage().close()  # skip early when the broker is down
    with pytest.raises(StorageUnavailable) as caught:
        RabbitStorage(
            RabbitOptions(url="amqp://guest:not-the-password@127.0.0.1:5672/", connect_timeout=5)
        )
    assert "not-the-password" not in str(caught.value)
    assert "guest@127.0.0.1:5672" in str(caught.value)


def test_unroutable_job_raises_naming_the_queue(make_storage: MakeStorage) -> None:
    storage = make_storage(declare=False)
    with pytest.raises(StorageError, match=r"queue '.*nowhere'.*oddjob rabbitmq declare"):
        storage.add([make_envelope("nowhere")])
    with pytest.raises(StorageError, match="oddjob rabbitmq declare"):
        storage.add([make_envelope("nowhere", delay=60)])
    # the publisher channel recovered: a job for a queue that exists is stored and claimed
    env = make_envelope("somewhere")
    storage.declare(["somewhere"], ladder=False)
    storage.add([env])
    assert [c.job.id for c in _wait_claim(storage, "somewhere", 30)] == [env.id]


def test_queue_declared_with_other_arguments_is_explained(make_storage: MakeStorage) -> None:
    make_storage(queue_type="classic").add([make_envelope("mixed")])
    quorum = make_storage(queue_type="quorum")
    with pytest.raises(ConfigError, match="queue_type"):
        quorum.add([make_envelope("mixed")])


def test_consumer_timeout_closure_is_explained() -> None:
    text = (
        "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value "
        "used: 1800000 ms. This timeout value can be configured, see consumers doc guide"
    )
    described = describe(RuntimeError(text))
    assert CONSUMER_TIMEOUT_HELP in described
    assert "x-consumer-timeout" in described


def test_consumer_timeout_option_needs_a_recent_broker(make_storage: MakeStorage) -> None:
    storage = make_storage()
    version = tuple(int(p) for p in storage.server_version.split(".")[:2])
    if version >= (3, 12):
        make_storage(consumer_timeout=7200).add([make_envelope("long")])
        return
    with pytest.raises(ConfigError, match=r"3\.12"):
        make_storage(consumer_timeout=7200)


# -- delays -------------------------------------------------------------------------------


def test_job_two_days_ahead_waits_in_the_ladder(make_storage: MakeStorage) -> None:
    storage = make_storage()
    run_at = utcnow() + timedelta(days=2)
    storage.add([make_envelope("later", run_at=run_at)])
    assert storage.claim("later", 10, LEASE, OWNER) == []
    counts = storage.counts("later")["later"]
    assert counts[JobState.SCHEDULED] == 1
    assert counts[JobState.READY] == 0
    due = storage.next_due("later")
    assert due is not None
    assert abs((due - run_at).total_seconds()) < 1
    # another process sees that something is scheduled, not exactly when
    other = make_storage()
    assert other.counts("later")["later"][JobState.SCHEDULED] == 1
    other_due = other.next_due("later")
    assert other_due is not None
    assert other_due <= utcnow() + timedelta(seconds=2)


def test_retry_published_slowly_is_still_awaited(make_storage: MakeStorage) -> None:
    """A retry whose publish outlasted its delay (the ladder was declared first) still counts.

    Its delay was set before the publish, so the ladder releases it that much later;
    a burst run that forgot it would stop before it comes back.
    """
    storage = make_storage()
    routed_at = utcnow()
    env = make_envelope("slow", run_at=routed_at + timedelta(seconds=1))
    storage.schedule.remember(env, routed_at, routed_at + timedelta(seconds=3))
    due = storage.next_due("slow")
    assert due is not None
    assert abs((due - (env.run_at + timedelta(seconds=3))).total_seconds()) < 0.01


def test_next_due_is_now_while_a_delivery_waits_in_the_buffer(make_storage: MakeStorage) -> None:
    storage = make_storage()
    envs = [make_envelope("buffered") for _ in range(2)]
    storage.add(envs)
    [first] = storage.claim("buffered", 1, LEASE, OWNER)  # the other one stays prefetched
    due = storage.next_due("buffered")  # no ladder count yet: the delivery answers
    assert due is not None
    assert due <= utcnow()
    [second] = storage.claim("buffered", 1, LEASE, OWNER)
    assert {first.job.id, second.job.id} == {e.id for e in envs}
    assert storage.next_due("buffered") is None  # nothing left, nothing in the ladder


def test_early_message_is_delayed_again_not_run(make_storage: MakeStorage) -> None:
    storage = make_storage()
    env = make_envelope("early", delay=3600)
    work = storage.declare(["early"])[0].work.name
    publish_raw(storage, work, msgspec.json.encode(env), "application/json")
    assert storage.claim("early", 10, LEASE, OWNER) == []
    counts = storage.counts("early")["early"]
    assert counts[JobState.SCHEDULED] == 1
    assert counts[JobState.READY] == 0


def test_msgpack_jobs_are_read_by_json_workers(make_storage: MakeStorage) -> None:
    producer = make_storage(encoding="msgpack")
    env = make_envelope("mp", arguments={"n": 3, "s": "é", "nested": {"a": [1, 2]}})
    producer.add([env])
    [claim] = make_storage(encoding="json").claim("mp", 10, LEASE, OWNER)
    assert claim.job.arguments == env.arguments


# -- leases are deliveries ------------------------------------------------------------------


def _close_consumer_channel(storage: RabbitStorage, queue: str) -> None:
    consumer = storage.consumers.get(queue)
    assert consumer is not None
    assert consumer.aio_channel is not None

    async def go() -> None:
        await consumer.aio_channel.close()

    storage.connection.call(go(), 10)


def test_claim_of_a_closed_channel_is_lost_and_redelivered(make_storage: MakeStorage) -> None:
    storage = make_storage(reconnect_interval=0.1)
    env = make_envelope("lost")
    storage.add([env])
    [claim] = storage.claim("lost", 1, LEASE, OWNER)
    _close_consumer_channel(storage, "lost")
    assert storage.extend([claim], LEASE) == {env.id}
    with pytest.raises(LeaseLost, match="closed"):
        storage.complete(claim)
    again = []
    for _ in range(50):
        again = storage.claim("lost", 1, LEASE, OWNER)
        if again:
            break
    assert [c.job.id for c in again] == [env.id]
    assert again[0].recovered is True
    assert again[0].job.attempts == 2  # the quorum queue counted the lost delivery
    storage.complete(again[0])


def test_connection_loss_reconnects_and_enqueues_again(make_storage: MakeStorage) -> None:
    storage = make_storage(reconnect_interval=0.1)
    storage.add([make_envelope("rc")])
    [claim] = storage.claim("rc", 1, LEASE, OWNER)

    async def drop() -> None:
        await storage.connection.drop(ConnectionError("simulated network loss"))

    storage.connection.call(drop(), 10)
    with pytest.raises(LeaseLost):
        storage.complete(claim)
    env = make_envelope("rc")
    storage.add([env])  # waits for the reconnect, then publishes
    ids = [c.job.id for c in drain(storage, "rc")]
    assert sorted(ids) == sorted([claim.job.id, env.id])


def test_closing_gives_back_prefetched_jobs_unmarked(make_storage: MakeStorage) -> None:
    first = make_storage()
    envs = [make_envelope("give") for _ in range(5)]
    first.add(envs)
    [started] = first.claim("give", 1, LEASE, OWNER)
    first.close()  # 4 prefetched, never claimed; 1 claimed without outcome
    claims = drain(make_storage(), "give")
    assert sorted(c.job.id for c in claims) == sorted(e.id for e in envs)
    recovered = {c.job.id for c in claims if c.recovered}
    assert recovered == {started.job.id}


# -- acks: queued by complete(), coalesced, flushed on close ----------------------------------


def test_ack_plan_uses_multiple_only_below_the_oldest_unsettled_tag() -> None:
    unsettled = {1, 2, 3, 5}
    assert ack_plan([3, 1, 2], unsettled) == [(3, True)]
    assert unsettled == {5}
    unsettled = {1, 2, 3, 4, 5}
    assert ack_plan([4, 1, 3], unsettled) == [(1, False), (3, False), (4, False)]
    assert unsettled == {2, 5}
    # 3, 4 and 5 were acked before: one multiple ack at 6 settles 2 and 6 and nothing else
    unsettled = {2, 6, 7}
    assert ack_plan([6, 2], unsettled) == [(6, True)]
    assert unsettled == {7}


def _flush(storage: RabbitStorage) -> None:
    storage.connection.call(storage.acks.flush(), 10)


def test_completed_jobs_stay_acked_when_others_of_the_channel_are_lost(
    make_storage: MakeStorage,
) -> None:
    storage = make_storage(reconnect_interval=0.1)
    envs = [make_envelope("acks") for _ in range(6)]
    storage.add(envs)
    claims = drain(storage, "acks")
    assert [c.job.id for c in claims] == [e.id for e in envs]
    for index in (3, 0, 4, 1):  # out of order; 2 and 5 stay unsettled
        storage.complete(claims[index])
    _flush(storage)
    _close_consumer_channel(storage, "acks")
    with pytest.raises(LeaseLost):
        storage.complete(claims[2])
    again = []
    for _ in range(50):
        again += storage.claim("acks", 10, LEASE, OWNER)
        if len(again) >= 2:
            break
    assert sorted(c.job.id for c in again) == sorted([envs[2].id, envs[5].id])
    assert all(c.recovered for c in again)
    for claim in again:
        storage.complete(claim)


def test_close_writes_queued_acks_first(make_storage: MakeStorage) -> None:
    first = make_storage()
    envs = [make_envelope("flush") for _ in range(300)]
    first.add(envs)
    claims = drain(first, "flush")
    assert len(claims) == len(envs)
    for claim in claims[:-1]:
        first.complete(claim)
    first.close()  # right away: the acks are still queued for the loop
    with pytest.raises(StorageError):  # LeaseLost or StorageUnavailable: too late, it runs again
        first.complete(claims[-1])
    assert [c.job.id for c in drain(make_storage(), "flush")] == [envs[-1].id]


def test_complete_many_reports_only_the_stale_claims(make_storage: MakeStorage) -> None:
    first = make_storage()
    envs = [make_envelope("many") for _ in range(3)]
    first.add(envs)
    claims = drain(first, "many")
    first.complete(claims[0])
    errors = first.complete_many([(c, None) for c in claims])
    assert set(errors) == {envs[0].id}
    assert isinstance(errors[envs[0].id], LeaseLost)
    first.close()
    assert drain(make_storage(), "many") == []


# -- poison jobs --------------------------------------------------------------------------


def test_job_whose_worker_always_dies_ends_failed(make_storage: MakeStorage) -> None:
    env = make_envelope("poison", retry=RetryPolicy(max_retries=1))
    make_storage().add([env])
    for attempt in range(1, 5):  # four workers die holding the job: 1 try + 1 retry + 2 grace
        victim = make_storage()
        [claim] = victim.claim("poison", 1, LEASE, OWNER)
        assert (claim.job.id, claim.job.attempts) == (env.id, attempt)
        victim.close()
    survivor = make_storage()
    assert survivor.claim("poison", 1, LEASE, OWNER) == []
    [record] = survivor.failed_jobs("poison")
    assert record.envelope.id == env.id
    assert record.envelope.errors[-1].type == "oddjob_rabbitmq.WorkerLost"
    assert "4 time(s)" in record.envelope.errors[-1].message
    assert record.envelope.attempts == 5


def test_quorum_delivery_limit_dead_letters_to_the_failed_queue(make_storage: MakeStorage) -> None:
    env = make_envelope("limit", retry=RetryPolicy(max_retries=1))
    make_storage(delivery_limit=1, lost_delivery_grace=50).add([env])
    for _ in range(2):
        victim = make_storage(delivery_limit=1, lost_delivery_grace=50)
        [_claim] = victim.claim("limit", 1, LEASE, OWNER)
        victim.close()
    survivor = make_storage(delivery_limit=1, lost_delivery_grace=50)
    assert survivor.claim("limit", 1, LEASE, OWNER) == []
    assert survivor.counts("limit")["limit"][JobState.FAILED] == 1
    assert [r.envelope.id for r in survivor.failed_jobs("limit")] == [env.id]


# -- failed jobs ----------------------------------------------------------------------------


def test_failed_jobs_can_be_listed_and_requeued(make_storage: MakeStorage) -> None:
    storage = make_storage()
    envs = [make_envelope("dead", target=f"m:f{i}") for i in range(3)]
    storage.add(envs)
    for claim in drain(storage, "dead"):
        storage.fail(claim, _error(claim.job.attempts))
    page = storage.search_failed(JobQuery(queue="dead", states=(JobState.FAILED,), limit=2))
    assert page.total == 3
    assert [j.id for j in page.jobs] == sorted((e.id for e in envs), reverse=True)[:2]
    assert storage.search_failed(JobQuery(target="m:f1")).total == 1
    with pytest.raises(UnsupportedOperation, match="only list failed jobs"):
        storage.search_failed(JobQuery(states=(JobState.READY,)))
    assert storage.requeue(envs[1].id, run_at=utcnow() + timedelta(seconds=1)) is True
    assert storage.counts("dead")["dead"][JobState.FAILED] == 2
    [again] = _wait_claim(storage, "dead", 8)
    assert again.job.id == envs[1].id
    assert again.job.attempts == 1
    assert [e.message for e in again.job.errors] == ["boom"]  # history kept


def _wait_claim(storage: RabbitStorage, queue: str, timeout: float) -> list[Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := storage.claim(queue, 10, LEASE, OWNER):
            return got
    return []


def _error(attempt: int) -> Any:
    from oddjob_core.model import AttemptError

    return AttemptError(attempt=attempt, type="builtins.RuntimeError", message="boom", at=utcnow())


def test_purge_waiting_empties_work_queue_and_ladder(make_storage: MakeStorage) -> None:
    storage = make_storage()
    storage.add([make_envelope("pw"), make_envelope("pw", delay=600), make_envelope("pw")])
    assert storage.purge_waiting("pw") == 3
    assert storage.counts("pw")["pw"] == {
        JobState.READY: 0,
        JobState.SCHEDULED: 0,
        JobState.FAILED: 0,
    }


def test_queue_deleted_under_workers_is_declared_and_consumed_again(
    make_storage: MakeStorage,
) -> None:
    storage = make_storage(reconnect_interval=0.1)
    storage.add([make_envelope("gone")])
    [claim] = storage.claim("gone", 1, LEASE, OWNER)
    storage.complete(claim)
    admin = make_storage()
    admin.delete_topology(["gone"])  # an operator deletes the queues; the consumer is cancelled
    env = make_envelope("gone", delay=1)
    storage.add([env])  # unroutable: declared again, published again
    [again] = _wait_claim(storage, "gone", 10)
    assert again.job.id == env.id


def test_wrong_schema_and_garbage_end_failed_with_the_decode_error(
    make_storage: MakeStorage,
) -> None:
    storage = make_storage()
    work = storage.declare(["bad"], ladder=False)[0].work.name
    publish_raw(storage, work, b'{"id": "x", "queue": 3}', "application/json")
    publish_raw(storage, work, b"\xff\x00garbage", "application/msgpack")
    good = make_envelope("bad")
    storage.add([good])
    assert [c.job.id for c in drain(storage, "bad")] == [good.id]
    assert storage.counts("bad")["bad"][JobState.FAILED] == 2
    reasons: list[str] = []

    async def read() -> None:
        channel = await storage.connection.channel()
        raw = await channel.get_underlay_channel()
        for _ in range(2):
            message = await raw.basic_get(f"{work}.failed", no_ack=True)
            reasons.append(message.header.properties.headers["x-oddjob-error"])
        await channel.close()

    storage.connection.call(read(), 10)
    assert any("Expected `str`" in r or "uuid" in r.lower() for r in reasons), reasons
    assert all("not an oddjob job envelope" in r for r in reasons), reasons
