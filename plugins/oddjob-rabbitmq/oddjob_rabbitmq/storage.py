"""``RabbitStorage``: one self-contained message per job, acked only after its outcome is recorded.

Threads: the instance owns one asyncio loop thread (``LoopThread``) that holds
the AMQP connection. Deliveries are appended by the loop to a per-queue buffer
(a ``deque``) that ``claim`` pops from the caller's thread without a round trip;
``complete`` queues its ack for the loop and returns (basic.ack has no reply):
the loop writes the queued acks at its next wake-up, coalesced into one
``multiple`` ack per channel where that is safe (``_ack_plan``), and ``close``
writes what is left. Retry, fail and release publish the next message first,
wait for its publisher confirm, and only then ack the old delivery: a crash in
between duplicates a job, never loses one.

Leases are the broker's: a delivery stays unacked while its job runs; when the
channel or connection dies the broker redelivers it (``recovered=True``) and the
old claim is stale (``LeaseLost``). There is no time-based lease expiry, so
``extend`` only reports claims whose channel died.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import concurrent.futures
import heapq
import itertools
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import aio_pika
import aiormq.exceptions as amqp_errors
import msgspec
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec

from oddjob_core.clock import utcnow
from oddjob_core.errors import (
    ConfigError,
    LeaseLost,
    PayloadError,
    StorageError,
    StorageUnavailable,
    UnsupportedOperation,
)
from oddjob_core.model import (
    AttemptError,
    Claim,
    Envelope,
    JobQuery,
    JobRecord,
    JobState,
    Page,
)
from oddjob_core.poison import check_route
from oddjob_core.storage import Capabilities, QueueManagement, Storage, check_purge_states

from . import topology as topo
from .acks import AckWaiter
from .codec import Codec
from .doctor import RabbitDoctor
from .loop import LoopThread
from .options import RabbitOptions
from .poison import corrupt_record
from .scheduling import RabbitScheduling
from .urls import redact, scrub

log = logging.getLogger("oddjob.rabbitmq")

PERSISTENT = 2
#: how long after its run_at a job this process scheduled still counts as waiting
#: (it travels from the last delay queue to the work queue, then to a consumer)
IN_TRANSIT = timedelta(seconds=2)
#: seconds next_due answers from its count of a delay ladder before counting again
LADDER_COUNT_TTL = 0.5
#: prefetch option 0: the first claim's limit (the executor's capacity) times this; the
#: deliveries whose acks are still on their way and the next ones in transit need room too,
#: or the executor starves while the broker waits for acks
AUTO_PREFETCH_PER_CLAIM = 2
#: seconds without a new delivery after which a claim stops collecting
SETTLE = 0.03
#: longest wait between reconnect attempts: jobs wait meanwhile (30 s made recovery after
#: a long outage take up to 30 s; 5 s costs the broker one connect attempt per 5 s)
RECONNECT_CAP = 5.0
FAILED_AT = "x-oddjob-failed-at"
FAILED_REASON = "x-oddjob-error"

CONSUMER_TIMEOUT_HELP = (
    "RabbitMQ closed the channel because a delivery stayed unacknowledged longer than its "
    "consumer_timeout (30 minutes by default): a job ran longer than that, so the broker "
    "requeued every job of that channel and may run them again. For long jobs raise the "
    "limit: on RabbitMQ >= 3.12 set the rabbitmq option consumer_timeout (seconds; oddjob "
    "declares x-consumer-timeout on the work queue) or a 'consumer-timeout' policy; on older "
    "brokers set consumer_timeout in rabbitmq.conf"
)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    text = str(exc) or type(exc).__name__
    if "PRECONDITION_FAILED" in text and "acknowledg" in text and "timed out" in text:
        return f"{text} ({CONSUMER_TIMEOUT_HELP})"
    return text


@dataclass
class _Consumer:
    """The consumer of one work queue: its channel, generation and delivery buffer."""

    queue: str
    amqp_queue: str
    prefetch: int
    buffer: collections.deque[tuple[int, DeliveredMessage]] = field(
        default_factory=collections.deque
    )
    channel: Any = None  # the aiormq channel of the current generation
    aio_channel: Any = None
    consumer_tag: str | None = None
    generation: int = 0
    closed_reason: str = ""
    restarting: bool = False
    initial_ready: int = 0  # jobs ready when the consumer started: the first claim waits for them
    received: int = 0  # deliveries since the consumer started
    started_at: float = 0.0  # time.monotonic() of the start

    def cancelled_by_broker(self) -> bool:
        """True when the channel lives but the broker cancelled the consumer (basic.cancel)."""
        channel = self.channel
        if channel is None or channel.is_closed or self.consumer_tag is None:
            return False
        return self.consumer_tag not in getattr(channel, "consumers", {self.consumer_tag: None})


@dataclass
class _Outstanding:
    consumer: _Consumer
    generation: int
    message: DeliveredMessage


def _ack_plan(tags: list[int], unsettled: set[int]) -> list[tuple[int, bool]]:
    """The ack frames for ``tags`` of one channel: ``(tag, multiple)`` in sending order.

    ``unsettled`` holds the channel's delivered tags not yet acked (``tags``
    are removed from it here). A ``multiple`` ack settles every unacked tag up
    to it, so it is used only below the oldest tag still unsettled; the tags
    above that are acked one by one.
    """
    unsettled.difference_update(tags)
    tags.sort()
    barrier = min(unsettled) if unsettled else None
    below = len(tags) if barrier is None else bisect.bisect_left(tags, barrier)
    plan = [(tags[below - 1], below > 1)] if below else []
    plan += [(tag, False) for tag in tags[below:]]
    return plan


@dataclass(frozen=True)
class _Out:
    """One message to publish: where, what, and which job (for errors)."""

    exchange: str
    routing_key: str
    body: bytes
    properties: spec.Basic.Properties
    job_id: str
    target_queue: str  # the AMQP queue it should reach, for messages


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
        self._where = redact(self.options.url)
        self._codec = Codec(self.options.encoding)
        self._levels = self.options.delay_levels
        self._closing = False
        self._closed = False
        self._lock = threading.Lock()
        self._arrived = threading.Condition(threading.Lock())
        self._waiters = 0
        self._consumers: dict[str, _Consumer] = {}
        self._outstanding: dict[str, _Outstanding] = {}
        self._topologies: dict[str, topo.Topology] = {}
        self._declared: set[tuple[str, str]] = set()
        # AMQP cannot list queues: management calls without a queue look at these
        self._known: set[str] = set(self.options.queues or ("default",))
        self._scheduled: dict[str, list[tuple[datetime, str]]] = {}
        self._ladder_counts: dict[str, tuple[float, int]] = {}
        self._ladder_epochs: dict[str, int] = {}  # bumped when this instance schedules a job
        self._counting: set[str] = set()  # queues whose ladder is being counted in the background
        self._generations = itertools.count(1)
        # acks queued by complete(), written by the loop (one writer task at a time)
        self._ack_lock = threading.Lock()
        self._acks: list[tuple[Any, int]] = []
        self._ack_writing = False
        self._ack_waiters: list[AckWaiter] = []  # complete_many calls waiting for their write
        # per consumer channel: delivered tags not acked yet (loop thread only)
        self._unsettled: weakref.WeakKeyDictionary[Any, set[int]] = weakref.WeakKeyDictionary()
        self._conn: Any = None
        self._publisher: Any = None
        self._server_version = ""
        self._last_error = ""
        self._reconnecting = False
        self._io = LoopThread("oddjob-rabbitmq-io")
        self._scheduling_init(
            self._io, self.options.url, self.options.prefix, self.options.publish_timeout + 5
        )
        self._connected = asyncio.Event()
        self._declare_lock: asyncio.Lock | None = None
        try:
            self._io.call(self._first_connect(), self.options.connect_timeout + 5)
        except TimeoutError:
            self._io.stop()
            raise StorageUnavailable(
                f"RabbitMQ at {self._where} did not answer within "
                f"{self.options.connect_timeout:g} s; is the broker running and reachable?"
            ) from None
        except BaseException:
            self._io.stop()
            raise
        if self.options.consumer_timeout is not None and _version(self._server_version) < (3, 12):
            self.close()
            raise ConfigError(
                f"rabbitmq option consumer_timeout needs RabbitMQ >= 3.12 (x-consumer-timeout); "
                f"{self._where} runs {self._server_version or 'an unknown version'}: raise "
                "consumer_timeout in rabbitmq.conf instead and unset the option"
            )

    # -- connection ------------------------------------------------------------------

    async def _first_connect(self) -> None:
        self._connected = asyncio.Event()
        self._declare_lock = asyncio.Lock()
        try:
            await self._connect_once()
        except Exception as exc:
            raise StorageUnavailable(
                f"cannot connect to RabbitMQ at {self._where}: "
                f"{scrub(str(exc) or type(exc).__name__, self.options.url)}; check the url "
                "option (host, port, user, vhost) and that the broker is running"
            ) from None

    async def _connect_once(self) -> None:
        conn = await aio_pika.connect(
            self.options.url,
            timeout=self.options.connect_timeout,
            client_properties={"connection_name": "oddjob-rabbitmq"},
        )
        try:
            transport = conn.transport
            assert transport is not None
            props = transport.connection.server_properties
            version = props.get("version", b"")
            self._server_version = version.decode() if isinstance(version, bytes) else str(version)
            channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
            publisher = await channel.get_underlay_channel()
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._publisher = publisher

        def closed(fut: asyncio.Future[Any]) -> None:
            self._on_connection_closed(conn, fut)

        transport.connection.closing.add_done_callback(closed)
        self._connected.set()
        for consumer in list(self._consumers.values()):
            try:
                await self._start_consumer(consumer)
            except Exception as exc:
                log.error("could not restart the consumer of queue '%s': %s", consumer.queue, exc)

    def _on_connection_closed(self, conn: Any, fut: asyncio.Future[Any]) -> None:
        if conn is not self._conn:
            return
        self._connected.clear()
        exc = None if fut.cancelled() else fut.exception()
        self._last_error = scrub(_describe(exc), self.options.url)
        for consumer in self._consumers.values():
            consumer.buffer.clear()
            consumer.channel = None
            consumer.initial_ready = 0
            consumer.closed_reason = f"the connection to RabbitMQ was lost ({self._last_error})"
        if self._closing:
            return
        log.warning(
            "connection to RabbitMQ at %s lost: %s; reconnecting", self._where, self._last_error
        )
        if not self._reconnecting:
            self._reconnecting = True
            asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        interval = max(0.1, self.options.reconnect_interval)
        try:
            while not self._closing:
                await asyncio.sleep(interval)
                try:
                    await self._connect_once()
                except Exception as exc:
                    self._last_error = scrub(str(exc) or type(exc).__name__, self.options.url)
                    log.warning(
                        "reconnecting to RabbitMQ at %s failed: %s; next try in %.1f s",
                        self._where,
                        self._last_error,
                        min(interval * 2, RECONNECT_CAP),
                    )
                    interval = min(interval * 2, RECONNECT_CAP)
                    continue
                log.info("reconnected to RabbitMQ at %s", self._where)
                return
        finally:
            self._reconnecting = False

    async def _wait_connected(self, deadline: float) -> None:
        if self._connected.is_set():
            return
        remaining = deadline - time.monotonic()
        try:
            await asyncio.wait_for(self._connected.wait(), max(0.0, remaining))
        except TimeoutError:
            raise StorageUnavailable(
                f"RabbitMQ at {self._where} is unreachable ({self._last_error or 'disconnected'}); "
                f"gave up after {self.options.publish_timeout:g} s (publish_timeout): nothing "
                "unconfirmed is reported as stored"
            ) from None

    async def _channel(self) -> Any:
        """A fresh plain channel for topology and management calls (closed by the caller)."""
        await self._wait_connected(time.monotonic() + self.options.publish_timeout)
        channel = await self._conn.channel(publisher_confirms=False)
        return channel

    async def _publisher_channel(self, deadline: float) -> Any:
        await self._wait_connected(deadline)
        if self._publisher is None or self._publisher.is_closed:
            channel = await self._conn.channel(publisher_confirms=True, on_return_raises=True)
            self._publisher = await channel.get_underlay_channel()
        return self._publisher

    # -- topology --------------------------------------------------------------------

    def topology(self, queue: str) -> topo.Topology:
        """The broker objects of oddjob queue ``queue`` (names and arguments)."""
        found = self._topologies.get(queue)
        if found is None:
            o = self.options
            try:
                found = topo.build(
                    queue,
                    prefix=o.prefix,
                    levels=o.delay_levels,
                    queue_type=o.queue_type,
                    delay_queue_type=o.delay_queue_type or o.queue_type,
                    delivery_limit=o.delivery_limit,
                    consumer_timeout_ms=(
                        None if o.consumer_timeout is None else int(o.consumer_timeout * 1000)
                    ),
                )
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            self._topologies[queue] = found
        return found

    def declare(self, queues: Iterable[str], *, ladder: bool = True) -> list[topo.Topology]:
        """Declare (idempotently) the work, failed and delay-ladder objects of ``queues``."""
        done = []
        for queue in queues:
            t = self.topology(queue)
            self._io.call(self._declare(t, ladder=ladder, force=True), self._long_timeout())
            done.append(t)
        return done

    def _long_timeout(self) -> float:
        return self.options.publish_timeout + 60.0

    async def _ensure(self, queue: str, *, ladder: bool) -> topo.Topology:
        t = self.topology(queue)
        self._known.add(queue)
        if self.options.declare:
            await self._declare(t, ladder=ladder, force=False)
        return t

    async def _declare(self, t: topo.Topology, *, ladder: bool, force: bool) -> None:
        want = [("base", t.queue)] + ([("ladder", t.queue)] if ladder else [])
        if not force and all((k, q) in self._declared for k, q in want):
            return
        assert self._declare_lock is not None
        async with self._declare_lock:
            if not force and all((k, q) in self._declared for k, q in want):
                return
            channel = await self._channel()
            what = t.work.name
            try:
                if force or ("base", t.queue) not in self._declared:
                    what = t.work.name
                    await channel.declare_queue(
                        t.work.name, durable=True, arguments=t.work.arguments
                    )
                    what = t.failed.name
                    await channel.declare_queue(
                        t.failed.name, durable=True, arguments=t.failed.arguments
                    )
                if ladder and (force or ("ladder", t.queue) not in self._declared):
                    exchanges = {}
                    for name in t.exchanges:
                        what = name
                        exchanges[name] = await channel.declare_exchange(
                            name, aio_pika.ExchangeType.TOPIC, durable=True
                        )
                    queues = {}
                    for spec_ in t.delay_queues:
                        what = spec_.name
                        queues[spec_.name] = await channel.declare_queue(
                            spec_.name, durable=True, arguments=spec_.arguments
                        )
                    work = await channel.declare_queue(
                        t.work.name, durable=True, arguments=t.work.arguments
                    )
                    queues[t.work.name] = work
                    for b in t.bindings:
                        what = f"binding {b.source} -> {b.destination}"
                        if b.to_exchange:
                            await exchanges[b.destination].bind(
                                exchanges[b.source], routing_key=b.pattern
                            )
                        else:
                            await queues[b.destination].bind(
                                exchanges[b.source], routing_key=b.pattern
                            )
            except amqp_errors.ChannelPreconditionFailed as exc:
                raise ConfigError(
                    f"RabbitMQ refused to declare '{what}' on {self._where}: {exc}. It exists with "
                    "other arguments (e.g. a classic queue where oddjob expects a quorum queue, or "
                    "another delay_levels/delivery_limit): delete it (when empty) or make the "
                    "rabbitmq options (queue_type, delay_levels, delivery_limit, "
                    "consumer_timeout, prefix) match it"
                ) from None
            except amqp_errors.ChannelAccessRefused as exc:
                raise ConfigError(
                    f"RabbitMQ user may not declare '{what}' on {self._where}: {exc}. Run "
                    "`oddjob rabbitmq declare` as a user with configure permission and set the "
                    "rabbitmq option declare = false"
                ) from None
            finally:
                if not channel.is_closed:
                    await channel.close()
            self._declared.update(want)

    # -- producing ---------------------------------------------------------------------

    def _properties(self, envelope: Envelope, headers: dict[str, Any] | None = None) -> Any:
        return spec.Basic.Properties(
            content_type=self._codec.content_type,
            delivery_mode=PERSISTENT,
            message_id=str(envelope.id),
            headers=headers,
        )

    def _route(self, t: topo.Topology, envelope: Envelope, body: bytes, now: datetime) -> _Out:
        """Publish to the work queue when due, else into the delay ladder."""
        seconds = topo.delay_seconds((envelope.run_at - now).total_seconds(), self._levels)
        props = self._properties(envelope)
        if seconds <= 0:
            return _Out("", t.work.name, body, props, str(envelope.id), t.work.name)
        key = topo.routing_key(seconds, self._levels)
        return _Out(t.entry_exchange, key, body, props, str(envelope.id), t.work.name)

    def _remember_scheduled(
        self, envelope: Envelope, routed_at: datetime, published_at: datetime | None = None
    ) -> None:
        """Note a job this instance sent into the ladder (``routed_at``: when its delay was set).

        The ladder releases it ``run_at - routed_at`` after the publish, so a slow
        publish (declaring the ladder first) shifts its release by as much. The
        ladder count is forgotten, and a count still running is not cached.
        """
        if envelope.run_at > routed_at:
            release = envelope.run_at + ((published_at or routed_at) - routed_at)
            with self._lock:
                heapq.heappush(
                    self._scheduled.setdefault(envelope.queue, []), (release, str(envelope.id))
                )
                self._ladder_counts.pop(envelope.queue, None)
                self._ladder_epochs[envelope.queue] = self._ladder_epochs.get(envelope.queue, 0) + 1

    def add(self, jobs: Sequence[Envelope]) -> None:
        if not jobs:
            return
        now = utcnow()
        outs: list[_Out] = []
        needs: dict[str, bool] = {}
        for env in jobs:
            t = self.topology(env.queue)
            out = self._route(t, env, self._codec.encode(env), now)
            needs[env.queue] = needs.get(env.queue, False) or bool(out.exchange)
            outs.append(out)
        self._run_publish(outs, needs)
        for env in jobs:
            self._remember_scheduled(env, now)

    def _run_publish(
        self, outs: list[_Out], needs: dict[str, bool], after: Callable[[], Any] | None = None
    ) -> None:
        async def go() -> None:
            for queue, ladder in needs.items():
                await self._ensure(queue, ladder=ladder)
            await self._publish(outs)

        try:
            self._io.call(go(), self._long_timeout())
        except TimeoutError:
            raise StorageUnavailable(
                f"RabbitMQ at {self._where} did not confirm {len(outs)} message(s) in time; "
                "they may or may not be stored"
            ) from None

    async def _publish(self, outs: list[_Out], *, redeclared: bool = False) -> None:
        """Publish every message and wait for all confirms together (pipelined).

        Unconfirmed messages are published again after a reconnect, until
        ``publish_timeout``. Nacked ones raise at once. Unroutable ones (the
        queue or exchange is missing: deleted by someone) are declared again
        and published once more when ``declare`` is on, else they raise.
        """
        deadline = time.monotonic() + self.options.publish_timeout
        pending = outs
        unroutable: list[tuple[_Out, str]] = []
        while pending:
            channel = await self._publisher_channel(deadline)
            results = await asyncio.gather(
                *(
                    channel.basic_publish(
                        o.body,
                        exchange=o.exchange,
                        routing_key=o.routing_key,
                        properties=o.properties,
                        mandatory=True,
                    )
                    for o in pending
                ),
                return_exceptions=True,
            )
            retry: list[_Out] = []
            for out, result in zip(pending, results, strict=True):
                if isinstance(result, spec.Basic.Ack):
                    continue
                if isinstance(result, spec.Basic.Nack):
                    raise StorageError(
                        f"RabbitMQ refused (nack) job {out.job_id} for queue '{out.target_queue}' "
                        f"on {self._where}: the queue may be over its length limit or a node "
                        "is unavailable; the job was not stored"
                    )
                if isinstance(result, amqp_errors.PublishError):
                    unroutable.append(
                        (
                            out,
                            f"RabbitMQ could not route job {out.job_id} to queue "
                            f"'{out.target_queue}' on {self._where} (returned as unroutable): "
                            "the queue or its bindings do not exist",
                        )
                    )
                    continue
                if isinstance(result, amqp_errors.ChannelNotFoundEntity):
                    unroutable.append(
                        (
                            out,
                            f"RabbitMQ has no exchange '{out.exchange}' for job {out.job_id} "
                            f"(queue '{out.target_queue}') on {self._where}",
                        )
                    )
                    continue
                if isinstance(result, amqp_errors.ChannelAccessRefused):
                    raise StorageError(
                        f"RabbitMQ user may not publish to '{out.exchange or out.target_queue}' "
                        f"on {self._where}: {result}"
                    )
                if isinstance(result, BaseException) and not isinstance(
                    result,
                    amqp_errors.AMQPError
                    | ConnectionError
                    | asyncio.CancelledError
                    | amqp_errors.ChannelInvalidStateError
                    | OSError
                    | TimeoutError,
                ):
                    raise StorageError(
                        f"publishing job {out.job_id} to RabbitMQ at {self._where} failed: "
                        f"{scrub(str(result), self.options.url)}"
                    ) from result
                retry.append(out)
            if retry:
                if time.monotonic() >= deadline:
                    raise StorageUnavailable(
                        f"RabbitMQ at {self._where} did not confirm {len(retry)} message(s) "
                        f"within {self.options.publish_timeout:g} s (publish_timeout): "
                        f"{self._last_error or 'connection lost'}; they may or may not be stored"
                    )
                log.warning(
                    "publishing %d message(s) to %s failed (%s); trying again",
                    len(retry),
                    self._where,
                    self._last_error or "channel closed",
                )
                await asyncio.sleep(0.2)
            pending = retry
        if not unroutable:
            return
        if self.options.declare and not redeclared:
            for queue in {self._queue_of(out) for out, _ in unroutable} - {None}:
                assert queue is not None
                self._declared.discard(("base", queue))
                self._declared.discard(("ladder", queue))
                log.warning("queue '%s' vanished from %s; declaring it again", queue, self._where)
                await self._ensure(queue, ladder=True)
            await self._publish([out for out, _ in unroutable], redeclared=True)
            return
        raise StorageError(
            f"{unroutable[0][1]}; run `oddjob rabbitmq declare` or set the rabbitmq option "
            "declare = true"
        )

    def _queue_of(self, out: _Out) -> str | None:
        for name, t in list(self._topologies.items()):
            if out.target_queue in (t.work.name, t.failed.name):
                return name
        return None

    # -- consuming ---------------------------------------------------------------------

    def _consumer(self, queue: str, limit: int) -> tuple[_Consumer, bool]:
        """The consumer of ``queue``, started on first use; True when it was started now."""
        consumer = self._consumers.get(queue)
        if consumer is not None:
            return consumer, False
        with self._lock:
            consumer = self._consumers.get(queue)
            if consumer is not None:
                return consumer, False
            t = self.topology(queue)
            prefetch = self.options.prefetch or AUTO_PREFETCH_PER_CLAIM * max(1, limit)
            consumer = _Consumer(queue, t.work.name, prefetch)
            self._io.call(self._open_consumer(consumer), self._long_timeout())
            self._consumers[queue] = consumer
            return consumer, True

    async def _open_consumer(self, consumer: _Consumer) -> None:
        await self._ensure(consumer.queue, ladder=False)
        [consumer.initial_ready] = await self._message_counts([consumer.amqp_queue])
        await self._start_consumer(consumer)

    async def _start_consumer(self, consumer: _Consumer) -> None:
        await self._wait_connected(time.monotonic() + self.options.publish_timeout)
        aio_channel = await self._conn.channel(publisher_confirms=False)
        channel = await aio_channel.get_underlay_channel()
        generation = next(self._generations)
        buffer = consumer.buffer
        arrived = self._arrived
        unsettled: set[int] = set()
        self._unsettled[channel] = unsettled

        async def on_delivery(message: DeliveredMessage) -> None:
            unsettled.add(message.delivery_tag or 0)
            buffer.append((generation, message))
            consumer.received += 1
            if self._waiters:
                with arrived:
                    arrived.notify_all()

        await channel.basic_qos(prefetch_count=consumer.prefetch)
        consumer.buffer.clear()
        consumer.received = 0
        consumer.started_at = time.monotonic()
        try:
            ok = await channel.basic_consume(consumer.amqp_queue, on_delivery, no_ack=False)
        except amqp_errors.ChannelNotFoundEntity:
            raise StorageError(
                f"RabbitMQ has no queue '{consumer.amqp_queue}' on {self._where}: run "
                "`oddjob rabbitmq declare` or set the rabbitmq option declare = true"
            ) from None
        consumer.channel = channel
        consumer.aio_channel = aio_channel
        consumer.consumer_tag = ok.consumer_tag
        consumer.generation = generation
        channel.closing.add_done_callback(
            lambda fut: self._on_consumer_closed(consumer, channel, fut)
        )

    def _on_consumer_closed(
        self, consumer: _Consumer, channel: Any, fut: asyncio.Future[Any]
    ) -> None:
        if consumer.channel is not channel:
            return
        exc = None if fut.cancelled() else fut.exception()
        reason = scrub(_describe(exc), self.options.url)
        consumer.channel = None
        consumer.buffer.clear()
        consumer.initial_ready = 0
        consumer.closed_reason = f"the channel consuming '{consumer.amqp_queue}' closed: {reason}"
        if self._closing or not self._connected.is_set():
            return
        log.error("%s; consuming again", consumer.closed_reason)
        if not consumer.restarting:
            consumer.restarting = True
            asyncio.get_running_loop().create_task(self._restart_consumer(consumer))

    async def _restart_consumer(self, consumer: _Consumer) -> None:
        try:
            delay = max(0.1, self.options.reconnect_interval)
            while not self._closing and consumer.channel is None:
                await asyncio.sleep(delay)
                if not self._connected.is_set():
                    return  # the reconnect restarts every consumer
                try:
                    await self._ensure(consumer.queue, ladder=False)
                    await self._start_consumer(consumer)
                except Exception as exc:
                    log.error("consuming '%s' again failed: %s", consumer.amqp_queue, exc)
                    delay = min(delay * 2, 30.0)
        finally:
            consumer.restarting = False

    async def _reconsume(self, consumer: _Consumer) -> None:
        """The broker cancelled our consumer (its queue was deleted): declare and consume again."""
        log.warning(
            "RabbitMQ cancelled the consumer of '%s' (queue deleted?); consuming again",
            consumer.amqp_queue,
        )
        self._declared.discard(("base", consumer.queue))
        self._declared.discard(("ladder", consumer.queue))
        if consumer.aio_channel is not None and not consumer.aio_channel.is_closed:
            await consumer.aio_channel.close()  # the close callback restarts the consumer

    def _take(self, consumer: _Consumer, limit: int) -> list[tuple[int, DeliveredMessage]]:
        taken: list[tuple[int, DeliveredMessage]] = []
        buffer = consumer.buffer
        while len(taken) < limit:
            try:
                taken.append(buffer.popleft())
            except IndexError:
                break
        return taken

    def _wait_for_buffer(
        self, consumers: Sequence[_Consumer], timeout: float, more_than: int = 0
    ) -> bool:
        """Wait until a buffer holds more than ``more_than`` deliveries; False on timeout."""
        if any(len(c.buffer) > more_than for c in consumers):
            return True
        if timeout <= 0:
            return False
        with self._arrived:
            self._waiters += 1
            try:
                return self._arrived.wait_for(
                    lambda: any(len(c.buffer) > more_than for c in consumers), timeout
                )
            finally:
                self._waiters -= 1

    async def _ready_count(self, consumer: _Consumer) -> int:
        channel = consumer.channel
        if channel is None or channel.is_closed:
            return 0
        ok = await channel.queue_declare(consumer.amqp_queue, passive=True)
        return int(ok.message_count or 0)

    def _ready_while_waiting(self, consumer: _Consumer) -> int | None:
        """Jobs the broker reports ready; None as soon as a delivery arrives instead.

        The count is a round trip (slow on a busy quorum queue); a delivery arriving
        meanwhile ends the wait at once, so idle pickup never waits for the reply.
        """
        future = self._io.submit(self._ready_count(consumer))
        if not self._finished_first(future, consumer):
            return None if consumer.buffer else 0
        try:
            return future.result()
        except (amqp_errors.AMQPError, ConnectionError, TimeoutError) as exc:
            log.debug("counting ready jobs of '%s' failed: %s", consumer.queue, exc)
            return 0

    def _finished_first(self, future: concurrent.futures.Future[Any], consumer: _Consumer) -> bool:
        """Wait for ``future`` or a delivery to ``consumer``; True when the future finished first."""
        future.add_done_callback(self._wake_waiters)
        with self._arrived:
            self._waiters += 1
            try:
                self._arrived.wait_for(
                    lambda: bool(consumer.buffer) or future.done(), self._long_timeout()
                )
            finally:
                self._waiters -= 1
        return future.done() and not consumer.buffer

    def _wake_waiters(self, _: object = None) -> None:
        with self._arrived:
            self._arrived.notify_all()

    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        """Hand out up to ``limit`` buffered deliveries (no broker round trip when some wait).

        With an empty buffer it waits a few milliseconds for the next delivery;
        when none comes (or the consumer started just now) it asks the broker how
        many jobs are ready and waits for them (``_collect``).
        """
        if limit <= 0:
            return []
        consumer, fresh = self._consumer(queue, limit)
        warm = min(consumer.initial_ready, consumer.prefetch)
        if consumer.received < warm:
            # just started: the broker is still pushing what was ready then; wait for it,
            # so claims see every job that was ready, not just those that beat the reply
            deadline = consumer.started_at + self.options.claim_wait
            while consumer.received < warm and time.monotonic() < deadline:
                with self._arrived:
                    self._waiters += 1
                    try:
                        self._arrived.wait(max(0.0, deadline - time.monotonic()))
                    finally:
                        self._waiters -= 1
        taken = self._take(consumer, limit)
        if not taken and consumer.cancelled_by_broker():
            self._io.call(self._reconsume(consumer), self._long_timeout())
            return []
        if not taken and not fresh and self._wait_for_buffer([consumer], SETTLE):
            # the usual case while draining: the next delivery was on its way (an ack freed
            # the prefetch window); hand out what came, without a round trip
            taken = self._take(consumer, limit)
        elif (
            len(taken) < limit
            and (fresh or not taken)
            and not self._collect(consumer, limit, taken, fresh)
        ):
            return []
        return self._to_claims(consumer, taken, lease, owner)

    def _collect(
        self,
        consumer: _Consumer,
        limit: int,
        taken: list[tuple[int, DeliveredMessage]],
        fresh: bool,
    ) -> bool:
        """Wait for deliveries the broker reports ready, adding them to ``taken``; False: none.

        A consumer started just now waits up to ``claim_wait`` for the first
        delivery and collects until none arrives for a few milliseconds, so later
        claims see every job that was ready (not just those that beat the reply).
        Otherwise it asks the broker how many jobs are ready and waits for those
        only; a delivery arriving before the answer is handed out at once.
        """
        deadline = time.monotonic() + self.options.claim_wait
        want = limit - len(taken)
        if not fresh:
            ready = self._ready_while_waiting(consumer)
            if ready is None:  # a delivery came first
                taken += self._take(consumer, want)
                return True
            want = min(want, ready)
        if not taken and not self._wait_for_buffer(
            [consumer], self.options.claim_wait if want else 0.0
        ):
            return False
        while (fresh or len(consumer.buffer) < want) and time.monotonic() < deadline:
            if not self._wait_for_buffer([consumer], SETTLE, len(consumer.buffer)):
                break  # nothing more arrived for a moment
        taken += self._take(consumer, limit - len(taken))
        return True

    def _to_claims(
        self,
        consumer: _Consumer,
        taken: list[tuple[int, DeliveredMessage]],
        lease: float,
        owner: str,
    ) -> list[Claim]:
        if not taken:
            return []
        now = utcnow()
        expires = now + timedelta(seconds=lease)
        claims: list[Claim] = []
        rejects: list[tuple[DeliveredMessage, Envelope | None, str]] = []
        early: list[tuple[DeliveredMessage, Envelope]] = []
        outstanding = self._outstanding
        for generation, message in taken:
            if message.channel.is_closed:
                continue  # its channel died: the broker redelivers it
            props = message.header.properties
            try:
                env = self._codec.decode(message.body, props.content_type)
                check_route(env, queue=consumer.queue, what=f"message {props.message_id}")
            except PayloadError as exc:  # CorruptJob: failed alone, body kept as it was
                rejects.append((message, None, str(exc)))
                continue
            if env.run_at > now:
                early.append((message, env))
                continue
            recovered = bool(message.redelivered)
            deliveries = 0
            if recovered:
                # quorum queues count deliveries that ended without an ack (worker died):
                # each was an attempt the body could not record
                deliveries = _deliveries(message)
                if deliveries > env.retry.max_retries + self.options.lost_delivery_grace:
                    rejects.append(
                        (
                            message,
                            env,
                            f"the worker running this job stopped without recording an outcome "
                            f"{deliveries} time(s) (killed, crashed, out of memory, or its "
                            "channel timed out); not running it again",
                        )
                    )
                    continue
            token = f"{generation}.{message.delivery_tag}"
            outstanding[token] = _Outstanding(consumer, generation, message)
            claims.append(
                Claim(
                    job=msgspec.structs.replace(env, attempts=env.attempts + 1 + deliveries),
                    token=token,
                    owner=owner,
                    lease_expires_at=expires,
                    recovered=recovered,
                    receipt=token,
                )
            )
        if rejects or early:
            try:
                self._io.call(self._set_aside(consumer.queue, rejects, early), self._long_timeout())
            except Exception as exc:
                log.error(
                    "could not move %d undeliverable message(s) of queue '%s' aside: %s; "
                    "the broker delivers them again",
                    len(rejects) + len(early),
                    consumer.queue,
                    exc,
                )
        return claims

    async def _set_aside(
        self,
        queue: str,
        rejects: list[tuple[DeliveredMessage, Envelope | None, str]],
        early: list[tuple[DeliveredMessage, Envelope]],
    ) -> None:
        """Fail corrupt or poison messages and re-delay early ones; ack each after its confirm."""
        t = await self._ensure(queue, ladder=bool(early))
        now = utcnow()
        outs: list[_Out] = []
        for message, env, reason in rejects:
            log.error(
                "job message %s in queue '%s' failed: %s",
                message.header.properties.message_id,
                queue,
                reason,
            )
            if env is None:
                props = message.header.properties
                outs.append(
                    _Out(
                        "",
                        t.failed.name,
                        message.body,
                        spec.Basic.Properties(
                            content_type=props.content_type,
                            delivery_mode=PERSISTENT,
                            message_id=props.message_id,
                            timestamp=now,
                            headers={FAILED_AT: now.isoformat(), FAILED_REASON: reason[:1000]},
                        ),
                        str(props.message_id),
                        t.failed.name,
                    )
                )
            else:
                attempt = env.attempts + 1 + _deliveries(message)
                error = AttemptError(
                    attempt=attempt,
                    type="oddjob_rabbitmq.WorkerLost",
                    message=reason,
                    at=now,
                )
                failed = msgspec.structs.replace(env, attempts=attempt, errors=(*env.errors, error))
                outs.append(self._failed_out(t, failed, reason, now))
        for message, env in early:
            outs.append(self._route(t, env, message.body, now))
        await self._publish(outs)
        for message, _, _ in rejects:
            await self._ack(message.channel, message.delivery_tag)
        for message, _ in early:
            await self._ack(message.channel, message.delivery_tag)

    def _failed_out(self, t: topo.Topology, env: Envelope, reason: str, now: datetime) -> _Out:
        return _Out(
            "",
            t.failed.name,
            self._codec.encode(env),
            spec.Basic.Properties(
                content_type=self._codec.content_type,
                delivery_mode=PERSISTENT,
                message_id=str(env.id),
                timestamp=now,
                headers={FAILED_AT: now.isoformat(), FAILED_REASON: reason[:1000]},
            ),
            str(env.id),
            t.failed.name,
        )

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        consumers = [c for q in queues if (c := self._consumers.get(q)) is not None]
        if not consumers:
            threading.Event().wait(timeout)
            return
        self._wait_for_buffer(consumers, timeout)

    # -- outcomes ------------------------------------------------------------------------

    def _pop(self, claim: Claim) -> _Outstanding:
        entry = self._outstanding.pop(claim.token, None)
        if entry is None:
            raise LeaseLost(
                f"job {claim.job.id}: this claim already recorded an outcome or was given back"
            )
        if entry.message.channel.is_closed:
            raise LeaseLost(
                f"job {claim.job.id}: {entry.consumer.closed_reason or 'its channel closed'}; "
                "RabbitMQ delivers the job again"
            )
        return entry

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
        acks: list[tuple[Any, int]] = []
        ids: list[uuid.UUID] = []
        for claim, _ in done:
            try:
                acks.append(_ack_of(self._pop(claim)))
                ids.append(claim.job.id)
            except StorageError as exc:
                errors[claim.job.id] = exc
            except Exception as exc:  # a claim this store cannot route: that job alone
                errors[claim.job.id] = StorageError(f"job {claim.job.id}: {exc!r}")
        if not acks:
            return errors
        waiter = AckWaiter(acks, ids)
        try:
            self._queue_acks(acks, waiter)
        except StorageError as exc:
            errors.update(dict.fromkeys(ids, exc))
            return errors
        errors.update(waiter.errors(self.options.publish_timeout + 5.0))
        return errors

    def _queue_acks(self, acks: list[tuple[Any, int]], waiter: AckWaiter | None = None) -> None:
        """Hand acks to the loop; wake it only when no writer is running already."""
        if not acks:
            return
        with self._ack_lock:
            if self._closed:
                raise StorageUnavailable(
                    "the storage is closed before the job's ack was written; RabbitMQ delivers "
                    "the job again"
                )
            self._acks.extend(acks)
            if waiter is not None:
                self._ack_waiters.append(waiter)
            if self._ack_writing:
                return  # the running writer picks them up
            self._ack_writing = True
        self._io.loop.call_soon_threadsafe(self._start_ack_writer)

    def _start_ack_writer(self) -> None:
        self._io.loop.create_task(self._write_acks())

    async def _write_acks(self, *, drain: bool = False) -> None:
        """Write queued acks until none is left (loop thread; one writer at a time).

        A write stuck on a dead connection (aiormq's frame queue is bounded) is
        given up after ``publish_timeout``, so later acks are never held behind it.
        """
        while True:
            with self._ack_lock:
                items, self._acks = self._acks, []
                waiters, self._ack_waiters = self._ack_waiters, []
                if not items:
                    self._ack_writing = False
                    for waiter in waiters:
                        waiter.settle(set())
                    return
            failed: set[int] | None
            try:  # asyncio.timeout, not wait_for: no extra task per write
                async with asyncio.timeout(self.options.publish_timeout):
                    failed = await self._send_acks(items, drain=drain or bool(waiters))
            except TimeoutError:
                failed = None
                log.warning(
                    "%d ack(s) were not written within %g s (publish_timeout); RabbitMQ "
                    "delivers those jobs again",
                    len(items),
                    self.options.publish_timeout,
                )
            for waiter in waiters:
                waiter.settle(failed)

    async def _send_acks(self, items: list[tuple[Any, int]], *, drain: bool) -> set[int]:
        """Ack ``items`` per channel, coalesced; ``drain``: wait until written to the socket.

        Returns the ``id()`` of every channel whose acks were not written.
        """
        failed: set[int] = set()
        by_channel: dict[int, tuple[Any, list[int]]] = {}
        for channel, tag in items:
            by_channel.setdefault(id(channel), (channel, []))[1].append(tag)
        for channel, tags in by_channel.values():
            if channel.is_closed:
                failed.add(id(channel))
                continue  # the broker redelivers them
            unsettled = self._unsettled.get(channel)
            plan = (
                _ack_plan(tags, unsettled) if unsettled is not None else [(t, False) for t in tags]
            )
            last = len(plan) - 1
            try:
                for i, (tag, multiple) in enumerate(plan):
                    await channel.basic_ack(tag, multiple=multiple, wait=drain and i == last)
            except Exception as exc:
                failed.add(id(channel))
                log.debug("acks on a closing channel were not written (%s); redelivered", exc)
        return failed

    async def _ack(self, channel: Any, tag: int | None) -> None:
        """Ack one delivery now (after an outcome's publish was confirmed)."""
        if tag is None:
            raise StorageError("a delivery without a delivery tag cannot be acknowledged")
        await channel.basic_ack(tag)
        unsettled = self._unsettled.get(channel)
        if unsettled is not None:
            unsettled.discard(tag)  # only now: a later multiple ack must not cover it earlier

    async def _flush_acks(self) -> None:
        """Write every queued ack before closing, so a clean shutdown causes no redeliveries.

        The last frame is drained to the socket; the basic.cancel that ``_shutdown``
        sends next on each consumer channel is answered only after the broker
        processed the acks before it.
        """
        while True:
            with self._ack_lock:
                writing = self._ack_writing
                if not writing:
                    self._ack_writing = True  # keep late complete() calls from starting a writer
            if not writing:
                break
            await asyncio.sleep(0.001)  # a writer task is running: let it finish
        await self._write_acks(drain=True)

    def _outcome(self, claim: Claim, make: Callable[[topo.Topology, datetime], _Out]) -> None:
        """Publish the next message of a claimed job, wait for its confirm, then ack the delivery."""
        entry = self._pop(claim)
        t = self.topology(claim.job.queue)
        out = make(t, utcnow())

        async def go() -> None:
            await self._ensure(claim.job.queue, ladder=bool(out.exchange))
            await self._publish([out])
            try:
                await self._ack(entry.message.channel, entry.message.delivery_tag)
            except Exception as exc:
                log.warning(
                    "job %s: outcome recorded but its delivery could not be acked (%s); "
                    "RabbitMQ may deliver the old attempt again",
                    claim.job.id,
                    exc,
                )

        try:
            self._io.call(go(), self._long_timeout())
        except BaseException:
            if not entry.message.channel.is_closed:
                self._outstanding[claim.token] = entry  # still ours: another outcome may follow
            raise

    def retry(self, claim: Claim, run_at: datetime, error: AttemptError) -> None:
        env = msgspec.structs.replace(claim.job, run_at=run_at, errors=(*claim.job.errors, error))

        def make(t: topo.Topology, now: datetime) -> _Out:
            return self._route(t, env, self._codec.encode(env), now)

        routed_at = utcnow()
        self._outcome(claim, make)
        self._remember_scheduled(env, routed_at, utcnow())

    def fail(self, claim: Claim, error: AttemptError) -> None:
        env = msgspec.structs.replace(claim.job, errors=(*claim.job.errors, error))
        self._outcome(claim, lambda t, now: self._failed_out(t, env, error.message, now))

    def release(self, claims: Sequence[Claim]) -> None:
        """Give claims back by publishing the unchanged message again, then acking.

        Not ``nack(requeue)``: a requeue marks the message redelivered and counts a
        delivery, so the next claim would look recovered and poison protection
        would count an attempt that never started.
        """
        entries: list[_Outstanding] = []
        for claim in claims:
            try:
                entries.append(self._pop(claim))
            except LeaseLost:
                continue
        if entries:
            self._io.call(self._republish(entries), self._long_timeout())

    async def _republish(self, entries: list[_Outstanding]) -> None:
        outs = []
        for e in entries:
            props = e.message.header.properties
            outs.append(
                _Out(
                    "",
                    e.consumer.amqp_queue,
                    e.message.body,
                    spec.Basic.Properties(
                        content_type=props.content_type,
                        delivery_mode=PERSISTENT,
                        message_id=props.message_id,
                    ),
                    str(props.message_id),
                    e.consumer.amqp_queue,
                )
            )
        await self._publish(outs)
        for e in entries:
            try:
                await self._ack(e.message.channel, e.message.delivery_tag)
            except Exception as exc:
                log.warning("could not ack a given-back delivery (%s); it may run twice", exc)

    def extend(self, claims: Sequence[Claim], lease: float) -> set[uuid.UUID]:
        lost = set()
        for claim in claims:
            entry = self._outstanding.get(claim.token)
            if entry is None or entry.message.channel.is_closed:
                lost.add(claim.job.id)
        return lost

    # -- waiting and counting ---------------------------------------------------------------

    async def _message_counts(self, names: Sequence[str]) -> list[int]:
        """Ready messages per queue (0 for a missing queue), by passive declares.

        One after the other on one channel (reopened after a missing queue closed
        it): opening a channel per queue concurrently made the broker close the
        whole connection ("second 'channel.open' seen").
        """
        channel = await self._channel()
        raw = await channel.get_underlay_channel()
        counts = []
        try:
            for name in names:
                try:
                    ok = await raw.queue_declare(name, passive=True)
                    counts.append(int(ok.message_count or 0))
                except amqp_errors.ChannelNotFoundEntity:
                    counts.append(0)
                    channel = await self._channel()
                    raw = await channel.get_underlay_channel()
        finally:
            if not channel.is_closed:
                await channel.close()
        return counts

    async def _queue_counts(self, queue: str) -> tuple[int, int, int]:
        """Counts by passive declares: counting never creates queues (a missing one counts 0)."""
        t = self.topology(queue)
        self._known.add(queue)
        names = [t.work.name, t.failed.name, *(q.name for q in t.delay_queues)]
        counts = await self._message_counts(names)
        return counts[0], sum(counts[2:]), counts[1]

    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        """Ready (work queue), scheduled (delay ladder, retries included) and failed per queue.

        Without ``queue``: the queues this process used plus the ``queues`` option
        (AMQP cannot list queues). Ready counts what waits in the work queue
        plus what this instance prefetched; deliveries prefetched or running in
        other processes (unacked) are not visible over AMQP and not counted.
        """
        queues = [queue] if queue is not None else sorted(self._known)
        result: dict[str, dict[JobState, int]] = {}
        for q in queues:
            ready, scheduled, failed = self._io.call(self._queue_counts(q), self._long_timeout())
            consumer = self._consumers.get(q)
            if consumer is not None:
                ready += len(consumer.buffer)  # prefetched here, not yet claimed
            result[q] = {
                JobState.READY: ready,
                JobState.SCHEDULED: scheduled,
                JobState.FAILED: failed,
            }
        return result

    def next_due(self, queue: str) -> datetime | None:
        """When the earliest job in the delay ladder is due; exact for jobs this process scheduled.

        A queue cannot be searched by time. This instance remembers the run_at
        of every delayed job it published (enqueue, retry, requeue); the ladder
        never releases a job before its run_at, so those are still waiting (kept
        until a moment after they are due, while the message travels to the work
        queue). When the ladder holds more messages than that (another process
        scheduled them) the answer is one second from now: a safe time to look
        again. None when nothing waits. The ladder count is cached and refreshed in
        the background; while the first count runs, a delivery answers "now".
        """
        now = utcnow()
        with self._lock:
            heap = self._scheduled.get(queue, [])
            while heap and heap[0][0] <= now - IN_TRANSIT:
                heapq.heappop(heap)
            cached = self._ladder_counts.get(queue)
        if cached is None:
            consumer = self._consumers.get(queue)
            future = self._io.submit(self._count_ladder(queue))
            if consumer is not None and not self._finished_first(future, consumer):
                return now  # a delivery came first: a job is due now (the count goes on)
            in_ladder = future.result(self._long_timeout())
        else:
            in_ladder = cached[1]
            if time.monotonic() - cached[0] >= LADDER_COUNT_TTL:
                self._refresh_ladder_count(queue)
        soon = now + timedelta(seconds=1)
        with self._lock:
            heap = self._scheduled.get(queue, [])
            if heap:
                return heap[0][0] if in_ladder <= len(heap) else min(heap[0][0], soon)
        return None if in_ladder == 0 else soon

    async def _count_ladder(self, queue: str) -> int:
        """Messages in the delay ladder of ``queue``, counted now.

        Cached unless this instance scheduled a job meanwhile: the count may have
        missed it, and a stale zero would end a burst run early.
        """
        with self._lock:
            epoch = self._ladder_epochs.get(queue, 0)
        _, in_ladder, _ = await self._queue_counts(queue)
        with self._lock:
            if self._ladder_epochs.get(queue, 0) == epoch:
                self._ladder_counts[queue] = (time.monotonic(), in_ladder)
        return in_ladder

    def _refresh_ladder_count(self, queue: str) -> None:
        """Count the ladder again in the background: the caller answers from the cache.

        Counting takes ~30 round trips; a coordinator blocked in ``next_due`` would
        not notice a job arriving meanwhile (the idle-pickup latency's long tail).
        """
        with self._lock:
            if queue in self._counting:
                return
            self._counting.add(queue)

        def done(future: concurrent.futures.Future[int]) -> None:
            with self._lock:
                self._counting.discard(queue)
            if not future.cancelled() and future.exception() is not None:
                log.debug("counting the delay ladder of '%s': %s", queue, future.exception())

        self._io.submit(self._count_ladder(queue)).add_done_callback(done)

    # -- failed jobs -------------------------------------------------------------------

    def failed_jobs(self, queue: str) -> list[JobRecord]:
        """The failed jobs of ``queue``, newest first (the failed queue is read and put back)."""
        records: list[JobRecord] = []

        def visit(message: DeliveredMessage, env: Envelope | None, at: datetime) -> str:
            if env is not None:
                records.append(
                    JobRecord(envelope=env, state=JobState.FAILED, updated_at=at, finished_at=at)
                )
            else:  # a corrupt message: listed too (it is counted as failed)
                props = message.header.properties
                records.append(corrupt_record(queue, props.message_id, message.body,
                                              props.headers, FAILED_REASON, at))  # fmt: skip
            return "keep"

        self._io.call(self._scan_failed(queue, visit), self._long_timeout())
        records.sort(key=lambda r: r.envelope.id, reverse=True)
        return records

    async def _scan_failed(
        self,
        queue: str,
        visit: Callable[[DeliveredMessage, Envelope | None, datetime], str],
        republish: Callable[[Envelope, datetime], Envelope] | None = None,
    ) -> int:
        """Read every message of the failed queue of ``queue`` once, then put back what is kept.

        ``visit`` returns ``"keep"``, ``"drop"`` (ack: deleted) or ``"requeue"``
        (published again to the work queue via ``republish``, confirmed, then
        acked). Messages are fetched with basic.get and returned by closing the
        channel, so a concurrent reader never loses one.
        """
        if republish is not None:
            t = await self._ensure(queue, ladder=True)
        else:
            t = self.topology(queue)  # reading never creates queues
        channel = await self._channel()
        raw = await channel.get_underlay_channel()
        acted = 0
        try:
            try:
                await raw.queue_declare(t.failed.name, passive=True)
            except amqp_errors.ChannelNotFoundEntity:
                return 0  # never declared: no failed jobs
            seen: set[int] = set()
            last_tag = 0
            to_ack: list[int] = []
            outs: list[_Out] = []
            while True:
                message = await raw.basic_get(t.failed.name, no_ack=False)
                if not isinstance(message.delivery, spec.Basic.GetOk):
                    break
                props = message.header.properties
                headers = props.headers or {}
                at = _failed_at(headers, props.timestamp)
                try:
                    env: Envelope | None = self._codec.decode(message.body, props.content_type)
                except PayloadError:
                    env = None
                key = hash((props.message_id, message.body))
                if key in seen and message.redelivered:
                    break  # wrapped around (another reader returned messages meanwhile)
                seen.add(key)
                last_tag = message.delivery_tag or 0
                action = visit(message, env, at)
                if action == "drop":
                    to_ack.append(message.delivery_tag)
                elif action == "requeue" and env is not None and republish is not None:
                    fresh = republish(env, utcnow())
                    outs.append(self._route(t, fresh, self._codec.encode(fresh), utcnow()))
                    to_ack.append(message.delivery_tag)
                    self._remember_scheduled(fresh, utcnow())
            if outs:
                await self._publish(outs)
            for tag in to_ack:
                await raw.basic_ack(tag)
            acted = len(to_ack)
            kept = len(seen) - acted
            if kept:
                # put the rest back explicitly and wait until the queue counts them again,
                # so a count right after a listing sees every failed job
                await raw.basic_nack(last_tag, multiple=True, requeue=True)
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline:
                    ok = await raw.queue_declare(t.failed.name, passive=True)
                    if int(ok.message_count or 0) >= kept:
                        break
                    await asyncio.sleep(0.01)
        finally:
            if not channel.is_closed:
                await channel.close()
        return acted

    def search_failed(self, query: JobQuery) -> Page:
        """Failed jobs matching ``query``: RabbitMQ cannot look into waiting queues without consuming them."""
        if query.states is not None and JobState.FAILED not in query.states:
            raise UnsupportedOperation(
                "storage 'rabbitmq' can only list failed jobs (it reads the failed queue); "
                "waiting jobs are messages in a queue, which cannot be searched; use counts()"
            )
        queues = [query.queue] if query.queue is not None else sorted(self._known)
        records: list[JobRecord] = []
        for q in queues:
            records.extend(self.failed_jobs(q))
        matched = [
            r
            for r in records
            if (query.target is None or r.envelope.target == query.target)
            and (query.created_after is None or r.envelope.created_at >= query.created_after)
            and (query.created_before is None or r.envelope.created_at < query.created_before)
            and (
                query.arguments is None
                or all(r.envelope.arguments.get(k) == v for k, v in query.arguments.items())
            )
        ]
        matched.sort(key=lambda r: r.envelope.id, reverse=True)
        return Page(
            jobs=matched[query.offset : query.offset + query.limit],
            total=len(matched),
            offset=query.offset,
            limit=query.limit,
        )

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        """Move a failed job back to its work queue (or the ladder) with a fresh retry budget.

        Looks in the failed queues of the queues this process knows (used, or
        listed in the ``queues`` option).
        """
        wanted = str(job_id)

        def visit(message: DeliveredMessage, env: Envelope | None, at: datetime) -> str:
            return "requeue" if env is not None and str(env.id) == wanted else "keep"

        def fresh(env: Envelope, now: datetime) -> Envelope:
            return msgspec.structs.replace(env, attempts=0, run_at=run_at or now)

        for q in sorted(self._known):
            if self._io.call(self._scan_failed(q, visit, fresh), self._long_timeout()):
                return True
        return False

    def purge(
        self,
        states: Iterable[JobState],
        older_than: datetime | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete failed jobs (succeeded jobs are never kept; nothing is cancelled)."""
        chosen = check_purge_states(states)
        if JobState.FAILED not in chosen:
            return 0
        queues = [queue] if queue is not None else sorted(self._known)
        total = 0
        for q in queues:
            if older_than is None:
                total += self._io.call(self._purge_failed(q), self._long_timeout())
                continue
            cutoff = older_than

            def visit(
                message: DeliveredMessage,
                env: Envelope | None,
                at: datetime,
                cutoff: datetime = cutoff,
            ) -> str:
                return "drop" if at < cutoff else "keep"

            total += self._io.call(self._scan_failed(q, visit), self._long_timeout())
        return total

    async def _purge_failed(self, queue: str) -> int:
        t = await self._ensure(queue, ladder=False)
        channel = await self._channel()
        try:
            raw = await channel.get_underlay_channel()
            ok = await raw.queue_purge(t.failed.name)
            return int(ok.message_count or 0)
        finally:
            if not channel.is_closed:
                await channel.close()

    def purge_waiting(self, queue: str) -> int:
        """Delete every job waiting in ``queue``'s work queue and delay ladder; return how many."""

        async def go() -> int:
            t = await self._ensure(queue, ladder=True)
            channel = await self._channel()
            try:
                raw = await channel.get_underlay_channel()
                total = 0
                for name in [t.work.name, *(q.name for q in t.delay_queues)]:
                    ok = await raw.queue_purge(name)
                    total += int(ok.message_count or 0)
                return total
            finally:
                if not channel.is_closed:
                    await channel.close()

        with self._lock:
            self._scheduled.pop(queue, None)
            self._ladder_counts.pop(queue, None)
        return self._io.call(go(), self._long_timeout())

    def delete_topology(self, queues: Iterable[str]) -> None:
        """Delete the queues and exchanges of ``queues`` with every message in them (tests, teardown)."""

        async def go(t: topo.Topology) -> None:
            channel = await self._channel()
            raw = await channel.get_underlay_channel()
            try:
                for name in [t.work.name, t.failed.name, *(q.name for q in t.delay_queues)]:
                    await raw.queue_delete(name)
                for name in t.exchanges:
                    await raw.exchange_delete(name)
            finally:
                if not channel.is_closed:
                    await channel.close()

        for q in queues:
            t = self.topology(q)
            self._io.call(go(t), self._long_timeout())
            self._declared.discard(("base", q))
            self._declared.discard(("ladder", q))

    @property
    def known_queues(self) -> frozenset[str]:
        """Queues this instance used or was configured with."""
        return frozenset(self._known)

    @property
    def server_version(self) -> str:
        """The broker's version string."""
        return self._server_version

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_scheduling()
        try:
            self._io.call(self._shutdown(), 15)
        except Exception as exc:
            log.debug("closing the RabbitMQ connection: %s", exc)
        finally:
            self._io.stop()

    async def _shutdown(self) -> None:
        """Write queued acks, stop consuming, give back unclaimed deliveries unchanged, disconnect."""
        await self._flush_acks()
        buffered: list[_Outstanding] = []
        for consumer in self._consumers.values():
            channel = consumer.channel
            if channel is not None and not channel.is_closed and consumer.consumer_tag:
                try:
                    await channel.basic_cancel(consumer.consumer_tag)
                except Exception as exc:
                    log.debug("cancelling consumer: %s", exc)
            while consumer.buffer:
                generation, message = consumer.buffer.popleft()
                if not message.channel.is_closed:
                    buffered.append(_Outstanding(consumer, generation, message))
        if buffered and self._connected.is_set():
            try:
                await asyncio.wait_for(self._republish(buffered), 10)
            except Exception as exc:
                log.debug("giving back buffered deliveries: %s", exc)
        self._closing = True
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception as exc:
                log.debug("closing connection: %s", exc)


def _ack_of(entry: _Outstanding) -> tuple[Any, int]:
    """The channel and delivery tag that acknowledge a claimed delivery."""
    tag = entry.message.delivery_tag
    if tag is None:
        raise StorageError("a delivery without a delivery tag cannot be acknowledged")
    return entry.message.channel, tag


def _deliveries(message: DeliveredMessage) -> int:
    """Earlier deliveries of this message that ended without an ack (quorum queues count them)."""
    count = (message.header.properties.headers or {}).get("x-delivery-count", 0)
    return count if isinstance(count, int) else 0


def _failed_at(headers: dict[str, Any], timestamp: datetime | None) -> datetime:
    value = headers.get(FAILED_AT)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    if timestamp is not None:
        from datetime import UTC

        return timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
    return utcnow()


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
