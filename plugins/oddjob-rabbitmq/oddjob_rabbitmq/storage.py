"""``RabbitStorage``: one self-contained message per job, acked only after its outcome is recorded.

A thin class that wires the modules, each with one job: ``connection`` (the
AMQP connection and its loop thread), ``declaring`` (topology), ``publishing``
(confirms), ``consuming`` (consumers and delivery buffers), ``claiming``
(deliveries to claims), ``acks`` (the ack queue and ``ack_plan``),
``schedule`` (the delay ladder and ``next_due``) and ``failed`` (failed-job
management).

``complete`` queues its ack for the loop and returns (basic.ack has no reply).
Retry, fail and release publish the next message first, wait for its publisher
confirm, and only then ack the old delivery: a crash in between duplicates a
job, never loses one.

Leases are the broker's: a delivery stays unacked while its job runs; when the
channel or connection dies the broker redelivers it (``recovered=True``) and the
old claim is stale (``LeaseLost``). There is no time-based lease expiry, so
``extend`` only reports claims whose channel died.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, ClassVar

import msgspec

from oddjob_core.clock import utcnow
from oddjob_core.errors import ConfigError, LeaseLost, StorageError
from oddjob_core.model import AttemptError, Claim, Envelope, JobQuery, JobRecord, JobState, Page
from oddjob_core.storage import Capabilities, QueueManagement, Storage

from . import topology as topo
from .acks import Acks, AckWaiter
from .claiming import Claiming, Held
from .codec import Codec
from .connection import Connection, version_tuple
from .consuming import Consumers
from .declaring import Topologies
from .doctor import RabbitDoctor
from .failed import FailedJobs
from .local_publish import CallerPublisher
from .messages import Messages, Out, unchanged
from .options import RabbitOptions
from .publishing import Publisher
from .schedule import ScheduleTracker
from .scheduling import RabbitScheduling

log = logging.getLogger("oddjob.rabbitmq")


class RabbitStorage(Storage, QueueManagement, RabbitScheduling, RabbitDoctor):
    """Jobs as messages on RabbitMQ: work queue, failed queue and a delay ladder per queue."""

    name: ClassVar[str] = "rabbitmq"
    # QueueManagement only (counts; requeue and purge of failed jobs): a queue has no
    # random access by id, so no get/search/cancel (failed jobs: search_failed)
    capabilities: ClassVar[Capabilities] = Capabilities(
        priority=False,
        fifo=True,
        lease_expiry=False,  # redelivery on channel/connection loss replaces leases
        keeps_finished=False,
        shared_between_processes=True,
    )

    def __init__(self, options: RabbitOptions | None = None) -> None:
        self.options = options or RabbitOptions()
        self._closed = False
        self.messages = Messages(Codec(self.options.encoding), self.options.delay_levels)
        self.connection = Connection(
            self.options,
            on_connected=lambda: self.consumers.restart_all(),
            on_lost=lambda reason: self.consumers.connection_lost(reason),
        )
        self._scheduling_init(
            self.connection.io,
            self.options.url,
            self.options.prefix,
            self.options.publish_timeout + 5,
        )
        self.topologies = Topologies(self.options, self.connection)
        self.acks = Acks(self.connection)
        self.consumers = Consumers(self.connection, self.topologies, self.acks)
        self.publisher = Publisher(self.connection, self.topologies)
        self.here = CallerPublisher(
            self.options.url,
            connect_timeout=self.options.connect_timeout,
            publish_timeout=self.options.publish_timeout,
            retry_interval=self.options.reconnect_interval,
        )
        self.claiming = Claiming(self.consumers, self.publisher, self.messages)
        self.schedule = ScheduleTracker(self.connection, self.topologies, self.consumers)
        self.failed = FailedJobs(
            self.connection, self.topologies, self.publisher, self.messages, self.schedule
        )
        self.connection.open()
        version = self.connection.server_version
        if self.options.consumer_timeout is not None and version_tuple(version) < (3, 12):
            self.close()
            raise ConfigError(
                f"rabbitmq option consumer_timeout needs RabbitMQ >= 3.12 (x-consumer-timeout); "
                f"{self.connection.where} runs {version or 'an unknown version'}: raise "
                "consumer_timeout in rabbitmq.conf instead and unset the option"
            )

    # -- topology ----------------------------------------------------------------------

    def topology(self, queue: str) -> topo.Topology:
        """The broker objects of oddjob queue ``queue`` (names and arguments)."""
        return self.topologies.of(queue)

    def declare(self, queues: Iterable[str], *, ladder: bool = True) -> list[topo.Topology]:
        """Declare (idempotently) the work, failed and delay-ladder objects of ``queues``."""
        return self.topologies.declare(queues, ladder=ladder)

    def delete_topology(self, queues: Iterable[str]) -> None:
        """Delete the queues and exchanges of ``queues`` with every message in them (tests, teardown)."""
        self.topologies.delete(queues)

    @property
    def known_queues(self) -> frozenset[str]:
        """Queues this instance used or was configured with."""
        return frozenset(self.topologies.known)

    @property
    def server_version(self) -> str:
        """The broker's version string."""
        return self.connection.server_version

    # -- producing and consuming -------------------------------------------------------

    def add(self, jobs: Sequence[Envelope]) -> None:
        if not jobs:
            return
        now = utcnow()
        outs: list[Out] = []
        ladders: dict[str, bool] = {}
        for env in jobs:
            out = self.messages.job(self.topologies.of(env.queue), env, now)
            ladders[env.queue] = ladders.get(env.queue, False) or bool(out.exchange)
            outs.append(out)
        deadline = None
        if self.options.caller_connections and self.topologies.declared_all(ladders):
            deadline = time.monotonic() + self.options.publish_timeout  # for both paths
            outs = self.here.publish(outs)  # from this thread; what is left: the loop thread
        if outs:
            self.publisher.publish_now(outs, ladders, deadline)
        for env in jobs:
            self.schedule.remember(env, now)

    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        """Hand out up to ``limit`` buffered deliveries (no broker round trip when some wait)."""
        return self.claiming.claim(queue, limit, lease, owner)

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        consumers = [c for q in queues if (c := self.consumers.get(q)) is not None]
        if not consumers:
            threading.Event().wait(timeout)
            return
        self.consumers.wait_for_buffer(consumers, timeout)

    def next_due(self, queue: str) -> datetime | None:
        """When the earliest job in the delay ladder is due (see ``ScheduleTracker.next_due``)."""
        return self.schedule.next_due(queue)

    # -- outcomes ------------------------------------------------------------------------

    def complete(self, claim: Claim, result: Any = None) -> None:
        """Ack the delivery: returns once the loop wrote the ack (``complete_many`` of one).

        basic.ack has no reply; "written" means handed to the socket. An ack
        lost with its channel raises ``StorageError`` here (a redelivery,
        at-least-once, never a lost job), so no hook reports a success that
        RabbitMQ will deliver again.
        """
        error = self.complete_many([(claim, result)]).get(claim.job.id)
        if error is not None:
            raise error

    def complete_many(self, done: Sequence[tuple[Claim, Any]]) -> dict[uuid.UUID, StorageError]:
        """Hand the acks of many successes to the loop at once and wait until they are written.

        Returns the stale claims and the jobs whose ack could not be written
        (RabbitMQ delivers those again): the ``job_succeeded`` hooks run only
        for jobs whose ack is on its way (see ``acks``).
        """
        errors: dict[uuid.UUID, StorageError] = {}
        acks = []
        ids: list[uuid.UUID] = []
        for claim, _ in done:
            try:
                acks.append(self.claiming.pop(claim).ack_of())
                ids.append(claim.job.id)
            except StorageError as exc:
                errors[claim.job.id] = exc
            except Exception as exc:  # a claim this store cannot route: that job alone
                errors[claim.job.id] = StorageError(f"job {claim.job.id}: {exc!r}")
        if not acks:
            return errors
        waiter = AckWaiter(acks, ids)
        try:
            self.acks.queue(acks, waiter)
        except StorageError as exc:
            errors.update(dict.fromkeys(ids, exc))
            return errors
        errors.update(waiter.errors(self.options.publish_timeout + 5.0))
        return errors

    def _outcome(self, claim: Claim, make: Callable[[topo.Topology, datetime], Out]) -> None:
        """Publish the next message of a claimed job, wait for its confirm, then ack the delivery."""
        entry = self.claiming.pop(claim)
        out = make(self.topologies.of(claim.job.queue), utcnow())

        async def go() -> None:
            await self.topologies.ensure(claim.job.queue, ladder=bool(out.exchange))
            await self.publisher.publish([out])
            try:
                await self.acks.ack(entry.message.channel, entry.message.delivery_tag)
            except Exception as exc:
                log.warning(
                    "job %s: outcome recorded but its delivery could not be acked (%s); "
                    "RabbitMQ may deliver the old attempt again",
                    claim.job.id,
                    exc,
                )

        try:
            self.connection.call(go())
        except BaseException:
            if not entry.message.channel.is_closed:
                self.claiming.held[claim.token] = entry  # still ours: another outcome may follow
            raise

    def retry(self, claim: Claim, run_at: datetime, error: AttemptError) -> None:
        env = msgspec.structs.replace(claim.job, run_at=run_at, errors=(*claim.job.errors, error))
        routed_at = utcnow()
        self._outcome(claim, lambda t, now: self.messages.job(t, env, now))
        self.schedule.remember(env, routed_at, utcnow())

    def fail(self, claim: Claim, error: AttemptError) -> None:
        env = msgspec.structs.replace(claim.job, errors=(*claim.job.errors, error))
        self._outcome(claim, lambda t, now: self.messages.failed(t, env, error.message, now))

    def release(self, claims: Sequence[Claim]) -> None:
        """Give claims back by publishing the unchanged message again, then acking.

        Not ``nack(requeue)``: a requeue marks the message redelivered and counts a
        delivery, so the next claim would look recovered and poison protection
        would count an attempt that never started.
        """
        entries: list[Held] = []
        for claim in claims:
            try:
                entries.append(self.claiming.pop(claim))
            except LeaseLost:
                continue
        if entries:
            self.connection.call(self._give_back(entries))

    async def _give_back(self, entries: list[Held]) -> None:
        await self.publisher.publish([unchanged(e.message, e.consumer.amqp_queue) for e in entries])
        for e in entries:
            try:
                await self.acks.ack(e.message.channel, e.message.delivery_tag)
            except Exception as exc:
                log.warning("could not ack a given-back delivery (%s); it may run twice", exc)

    def extend(self, claims: Sequence[Claim], lease: float) -> set[uuid.UUID]:
        return {claim.job.id for claim in claims if self.claiming.lost(claim)}

    # -- management (QueueManagement) ---------------------------------------------------

    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        """Ready (work queue), scheduled (delay ladder, retries included) and failed per queue.

        Without ``queue``: the queues this process used plus the ``queues`` option
        (AMQP cannot list queues). Ready counts what waits in the work queue
        plus what this instance prefetched; deliveries prefetched or running in
        other processes (unacked) are not visible over AMQP and not counted.
        """
        queues = [queue] if queue is not None else sorted(self.topologies.known)
        result: dict[str, dict[JobState, int]] = {}
        for q in queues:
            ready, scheduled, failed = self.connection.call(self.topologies.queue_counts(q))
            consumer = self.consumers.get(q)
            if consumer is not None:
                ready += len(consumer.buffer)  # prefetched here, not yet claimed
            result[q] = {
                JobState.READY: ready,
                JobState.SCHEDULED: scheduled,
                JobState.FAILED: failed,
            }
        return result

    def failed_jobs(self, queue: str) -> list[JobRecord]:
        """The failed jobs of ``queue``, newest first (the failed queue is read and put back)."""
        return self.failed.of_queue(queue)

    def search_failed(self, query: JobQuery) -> Page:
        """Failed jobs matching ``query``: waiting queues cannot be read without consuming them."""
        return self.failed.search(query)

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        """Move a failed job back to its work queue (or the ladder) with a fresh retry budget."""
        return self.failed.requeue(job_id, run_at)

    def purge_finished(
        self, states: tuple[JobState, ...], older_than: datetime | None, queue: str | None
    ) -> int:
        """Delete failed jobs (succeeded jobs are never kept; nothing is cancelled)."""
        return self.failed.purge(older_than, queue) if JobState.FAILED in states else 0

    def purge_waiting(self, queue: str) -> int:
        """Delete every job waiting in ``queue``'s work queue and delay ladder; return how many."""

        async def go() -> int:
            t = await self.topologies.ensure(queue, ladder=True)
            return await self.topologies.purge([t.work.name, *(q.name for q in t.delay_queues)])

        self.schedule.forget(queue)
        return self.connection.call(go())

    # -- closing -----------------------------------------------------------------------

    @property
    def caller_connections_open(self) -> int:
        """Producer connections open now (``caller_connections``), idle or publishing."""
        return self.here.open_connections()

    @property
    def caller_connections_opened(self) -> int:
        """Producer connections opened so far (``caller_connections``)."""
        return self.here.connections

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_scheduling()
        self.here.close()
        self.acks.close()
        try:
            self.connection.call(self._shutdown(), 15)
        except Exception as exc:
            log.debug("closing the RabbitMQ connection: %s", exc)
        finally:
            self.connection.stop()

    async def _shutdown(self) -> None:
        """Write queued acks, stop consuming, give back unclaimed deliveries unchanged, disconnect."""
        await self.acks.flush()
        buffered = [
            Held(consumer, generation, message)
            for consumer, (generation, message) in await self.consumers.cancel_all()
        ]
        if buffered and self.connection.connected.is_set():
            try:
                await asyncio.wait_for(self._give_back(buffered), 10)
            except Exception as exc:
                log.debug("giving back buffered deliveries: %s", exc)
        await self.connection.close()
