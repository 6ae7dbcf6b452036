"""Poison messages on RabbitMQ (issue #12): failed alone, and visible in the failed list."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from oddjob_rabbitmq import RabbitStorage

from oddjob_core.model import JobState
from oddjob_core.testing import make_envelope, wait_for
from oddjob_core.testing.storage_suite import LEASE, OWNER


def test_a_corrupt_message_is_listed_with_the_failed_jobs(storage: RabbitStorage) -> None:
    deep_value: object = []
    for _ in range(3000):
        deep_value = [deep_value]
    deep = make_envelope("deep", arguments={"n": 1, "s": deep_value})
    good = make_envelope("deep")
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # a producer that raised its own limit
    try:
        storage.add([deep, good])
    finally:
        sys.setrecursionlimit(old)
    claims: list = []
    assert wait_for(lambda: bool(claims.extend(storage.claim("deep", 10, LEASE, OWNER))) or
                    good.id in {c.job.id for c in claims}, 15)  # fmt: skip
    assert [c.job.id for c in claims] == [good.id]
    assert storage.complete_many([(c, None) for c in claims]) == {}
    assert wait_for(lambda: storage.counts("deep")["deep"][JobState.FAILED] == 1, 15)
    failed = storage.failed_jobs("deep")  # was empty: counted as failed, missing from the list
    assert [r.id for r in failed] == [deep.id]
    assert "recursion limit" in failed[0].envelope.errors[-1].message


def test_a_success_whose_ack_cannot_be_written_is_reported_not_recorded(
    storage: RabbitStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 7: the ack was only queued, so job_succeeded fired for a job RabbitMQ then
    delivered again; now complete_many waits for the write and reports the lost ack."""
    env = make_envelope("acked")
    storage.add([env])
    claims: list = []
    assert wait_for(lambda: claims.extend(storage.claim("acked", 10, LEASE, OWNER)) or claims, 15)
    channel = storage.claiming.held[claims[0].token].message.channel
    pop = storage.claiming.pop

    def pop_then_lose_the_channel(claim: Any) -> Any:
        entry = pop(claim)
        storage.connection.call(channel.close(), 10)  # the channel dies before the ack is written
        return entry

    monkeypatch.setattr(storage.claiming, "pop", pop_then_lose_the_channel)
    errors = storage.complete_many([(claims[0], None)])
    assert set(errors) == {env.id}  # was {}: reported as recorded, then redelivered
    assert "not written" in str(errors[env.id])


def test_a_url_that_is_not_amqp_is_refused() -> None:
    """Item 8: an http:// URL was accepted (and failed later, obscurely)."""
    from oddjob_rabbitmq import RabbitOptions

    with pytest.raises(ValueError, match=r"amqp:// or amqps://"):
        RabbitOptions(url="http://guest:guest@127.0.0.1:15672/")
