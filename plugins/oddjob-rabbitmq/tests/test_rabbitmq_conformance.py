"""The shared conformance suite against the real broker (a name prefix per test)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, ClassVar

import msgspec
import pytest
from oddjob_rabbitmq import RabbitStorage
from pamqp import commands as spec

from oddjob_core.clock import utcnow
from oddjob_core.model import AttemptError, JobState
from oddjob_core.storage import Storage
from oddjob_core.testing import StorageSuite, make_envelope
from oddjob_core.testing.recurring_suite import RecurringSuite
from oddjob_core.testing.storage_suite import LEASE, OWNER, StorageFactory

MakeStorage = Callable[..., Any]


def _error(attempt: int) -> AttemptError:
    return AttemptError(attempt=attempt, type="builtins.RuntimeError", message="boom", at=utcnow())


class TestRabbitStorage(StorageSuite, RecurringSuite):
    timing_slack = 1.0  # the delay ladder works in whole seconds
    overridden_tests: ClassVar[dict[str, str]] = {
        "test_purge_deletes_old_finished_jobs_only": (
            "RabbitMQ keeps no succeeded jobs (an acked message is gone); purge deletes failed "
            "jobs, tested by the override"
        ),
    }

    expected_failures: ClassVar[dict[str, str]] = {
        "test_re_adding_an_existing_id_keeps_the_stored_job": (
            "a re-added id is published as a second message: the broker cannot look up a job "
            "by id before publishing; unique ids in add on every backend are issue #15's"
        ),
    }

    @pytest.fixture
    def storage_factory(self, make_storage: MakeStorage) -> Iterator[StorageFactory]:
        return make_storage

    def inject_corrupt_job(self, storage: Storage, queue: str) -> None:
        assert isinstance(storage, RabbitStorage)
        work = storage.declare([queue], ladder=False)[0].work.name
        publish_raw(storage, work, b"\x00 not an envelope", "application/json")

    def inject_misrouted_job(self, storage: Storage, queue: str, kind: str) -> uuid.UUID:
        """A message published by hand onto ``queue`` whose envelope names another queue."""
        if kind == "id":
            pytest.skip("a message is its envelope: no second id to disagree with")
        assert isinstance(storage, RabbitStorage)
        work = storage.declare([queue], ladder=False)[0].work.name
        env = make_envelope(f"{queue}-elsewhere")
        publish_raw(storage, work, msgspec.json.encode(env), "application/json")
        return env.id

    def test_purge_deletes_old_finished_jobs_only(self, storage: Storage) -> None:
        assert isinstance(storage, RabbitStorage)
        old, fresh, waiting = (
            make_envelope("purge"),
            make_envelope("purge"),
            make_envelope("purge", delay=600),
        )
        storage.add([old, fresh, waiting])
        claims = {c.job.id: c for c in storage.claim("purge", 10, LEASE, OWNER)}
        assert set(claims) == {old.id, fresh.id}
        storage.fail(claims[old.id], _error(1))
        cutoff = utcnow()
        storage.fail(claims[fresh.id], _error(1))
        assert storage.purge([JobState.SUCCEEDED]) == 0
        assert storage.purge([JobState.FAILED], queue="elsewhere") == 0
        assert storage.purge([JobState.FAILED], older_than=cutoff - timedelta(hours=1)) == 0
        assert storage.purge([JobState.FAILED], older_than=cutoff) == 1
        with pytest.raises(ValueError, match="only succeeded, failed or cancelled"):
            storage.purge([JobState.SCHEDULED])
        counts = storage.counts("purge")["purge"]
        assert counts[JobState.FAILED] == 1
        assert counts[JobState.SCHEDULED] == 1
        assert storage.purge([JobState.FAILED], queue="purge") == 1
        assert storage.counts("purge")["purge"][JobState.FAILED] == 0


def publish_raw(storage: RabbitStorage, amqp_queue: str, body: bytes, content_type: str) -> None:
    """Put raw bytes into a queue, bypassing oddjob's encoding (for bad-input tests)."""

    async def go() -> None:
        channel = await storage.connection.publisher_channel(float("inf"))
        await channel.basic_publish(
            body,
            routing_key=amqp_queue,
            properties=spec.Basic.Properties(content_type=content_type, delivery_mode=2),
            mandatory=True,
        )

    storage.connection.call(go(), 10)
