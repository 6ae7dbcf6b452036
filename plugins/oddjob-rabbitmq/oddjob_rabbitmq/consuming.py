"""Consumers: one per work queue, each with a delivery buffer that claims pop without a round trip.

The loop appends deliveries to the consumer's buffer (a ``deque``); ``take``
pops from the caller's thread. Waiting claims sleep on one condition that a
delivery notifies. A consumer whose channel closes is started again, and
after a reconnect every consumer is.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika.abc
import aiormq.abc
import aiormq.exceptions as amqp_errors
from aiormq.abc import DeliveredMessage

from oddjob_core.errors import StorageError

from .acks import Acks
from .connection import Connection, describe
from .declaring import Topologies
from .urls import scrub

log = logging.getLogger("oddjob.rabbitmq")

#: prefetch option 0: the first claim's limit (the executor's capacity) times this; the
#: deliveries whose acks are still on their way and the next ones in transit need room too,
#: or the executor starves while the broker waits for acks
AUTO_PREFETCH_PER_CLAIM = 2

Delivery = tuple[int, DeliveredMessage]  # (consumer generation, message)


@dataclass
class Consumer:
    """The consumer of one work queue: its channel, generation and delivery buffer."""

    queue: str
    amqp_queue: str
    prefetch: int
    buffer: collections.deque[Delivery] = field(default_factory=collections.deque)
    channel: aiormq.abc.AbstractChannel | None = None  # the channel of the current generation
    aio_channel: aio_pika.abc.AbstractChannel | None = None
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

    def take(self, limit: int) -> list[Delivery]:
        """Pop up to ``limit`` buffered deliveries."""
        taken: list[Delivery] = []
        buffer = self.buffer
        while len(taken) < limit:
            try:
                taken.append(buffer.popleft())
            except IndexError:
                break
        return taken


class Consumers:
    """The consumers of one storage, and the condition claims wait on for deliveries."""

    def __init__(self, connection: Connection, topologies: Topologies, acks: Acks) -> None:
        self.connection = connection
        self.topologies = topologies
        self.acks = acks
        self.options = connection.options
        self._by_queue: dict[str, Consumer] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(threading.Lock())
        self._waiters = 0
        self._generations = itertools.count(1)

    def get(self, queue: str) -> Consumer | None:
        """The consumer of ``queue`` if one was started."""
        return self._by_queue.get(queue)

    def all(self) -> list[Consumer]:
        return list(self._by_queue.values())

    def open(self, queue: str, limit: int) -> tuple[Consumer, bool]:
        """The consumer of ``queue``, started on first use; True when it was started now."""
        consumer = self._by_queue.get(queue)
        if consumer is not None:
            return consumer, False
        with self._lock:
            consumer = self._by_queue.get(queue)
            if consumer is not None:
                return consumer, False
            t = self.topologies.of(queue)
            prefetch = self.options.prefetch or AUTO_PREFETCH_PER_CLAIM * max(1, limit)
            consumer = Consumer(queue, t.work.name, prefetch)
            self.connection.call(self._open(consumer))
            self._by_queue[queue] = consumer
            return consumer, True

    async def _open(self, consumer: Consumer) -> None:
        await self.topologies.ensure(consumer.queue, ladder=False)
        [consumer.initial_ready] = await self.topologies.message_counts([consumer.amqp_queue])
        await self._start(consumer)

    async def restart_all(self) -> None:
        """Consume again on a new connection."""
        for consumer in list(self._by_queue.values()):
            try:
                await self._start(consumer)
            except Exception as exc:
                log.error("could not restart the consumer of queue '%s': %s", consumer.queue, exc)

    def connection_lost(self, reason: str) -> None:
        """Every buffered delivery died with the connection: the broker redelivers them."""
        for consumer in self._by_queue.values():
            consumer.buffer.clear()
            consumer.channel = None
            consumer.initial_ready = 0
            consumer.closed_reason = reason

    async def _start(self, consumer: Consumer) -> None:
        await self.connection.wait_connected(time.monotonic() + self.options.publish_timeout)
        aio_channel = await self.connection.channel()
        channel = await aio_channel.get_underlay_channel()
        generation = next(self._generations)
        buffer = consumer.buffer
        arrived = self._arrived
        unsettled = self.acks.track(channel)

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
                f"RabbitMQ has no queue '{consumer.amqp_queue}' on {self.connection.where}: run "
                "`oddjob rabbitmq declare` or set the rabbitmq option declare = true"
            ) from None
        consumer.channel = channel
        consumer.aio_channel = aio_channel
        consumer.consumer_tag = ok.consumer_tag
        consumer.generation = generation
        channel.closing.add_done_callback(lambda fut: self._closed(consumer, channel, fut))

    def _closed(
        self, consumer: Consumer, channel: aiormq.abc.AbstractChannel, fut: asyncio.Future[Any]
    ) -> None:
        if consumer.channel is not channel:
            return
        exc = None if fut.cancelled() else fut.exception()
        reason = scrub(describe(exc), self.options.url)
        consumer.channel = None
        consumer.buffer.clear()
        consumer.initial_ready = 0
        consumer.closed_reason = f"the channel consuming '{consumer.amqp_queue}' closed: {reason}"
        if self.connection.closing or not self.connection.connected.is_set():
            return
        log.error("%s; consuming again", consumer.closed_reason)
        if not consumer.restarting:
            consumer.restarting = True
            asyncio.get_running_loop().create_task(self._restart(consumer))

    async def _restart(self, consumer: Consumer) -> None:
        try:
            delay = max(0.1, self.options.reconnect_interval)
            while not self.connection.closing and consumer.channel is None:
                await asyncio.sleep(delay)
                if not self.connection.connected.is_set():
                    return  # the reconnect restarts every consumer
                try:
                    await self.topologies.ensure(consumer.queue, ladder=False)
                    await self._start(consumer)
                except Exception as exc:
                    log.error("consuming '%s' again failed: %s", consumer.amqp_queue, exc)
                    delay = min(delay * 2, 30.0)
        finally:
            consumer.restarting = False

    async def reconsume(self, consumer: Consumer) -> None:
        """The broker cancelled our consumer (its queue was deleted): declare and consume again."""
        log.warning(
            "RabbitMQ cancelled the consumer of '%s' (queue deleted?); consuming again",
            consumer.amqp_queue,
        )
        self.topologies.forget(consumer.queue)
        if consumer.aio_channel is not None and not consumer.aio_channel.is_closed:
            await consumer.aio_channel.close()  # the close callback restarts the consumer

    async def cancel_all(self) -> list[tuple[Consumer, Delivery]]:
        """Stop consuming (shutdown); the buffered deliveries whose channel still lives."""
        buffered: list[tuple[Consumer, Delivery]] = []
        for consumer in self._by_queue.values():
            channel = consumer.channel
            if channel is not None and not channel.is_closed and consumer.consumer_tag:
                try:
                    await channel.basic_cancel(consumer.consumer_tag)
                except Exception as exc:
                    log.debug("cancelling consumer: %s", exc)
            while consumer.buffer:
                generation, message = consumer.buffer.popleft()
                if not message.channel.is_closed:
                    buffered.append((consumer, (generation, message)))
        return buffered

    # -- waiting for deliveries ----------------------------------------------------------

    def wait(self, timeout: float) -> None:
        """Sleep until any delivery arrives or ``timeout`` passes."""
        with self._arrived:
            self._waiters += 1
            try:
                self._arrived.wait(timeout)
            finally:
                self._waiters -= 1

    def wait_for_buffer(
        self, consumers: Sequence[Consumer], timeout: float, more_than: int = 0
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

    async def _ready_count(self, consumer: Consumer) -> int:
        channel = consumer.channel
        if channel is None or channel.is_closed:
            return 0
        ok = await channel.queue_declare(consumer.amqp_queue, passive=True)
        return int(ok.message_count or 0)

    def ready_while_waiting(self, consumer: Consumer) -> int | None:
        """Jobs the broker reports ready; None as soon as a delivery arrives instead.

        The count is a round trip (slow on a busy quorum queue); a delivery arriving
        meanwhile ends the wait at once, so idle pickup never waits for the reply.
        """
        future = self.connection.submit(self._ready_count(consumer))
        if not self.finished_first(future, consumer):
            return None if consumer.buffer else 0
        try:
            return future.result()
        except (amqp_errors.AMQPError, ConnectionError, TimeoutError) as exc:
            log.debug("counting ready jobs of '%s' failed: %s", consumer.queue, exc)
            return 0

    def finished_first(self, future: concurrent.futures.Future[Any], consumer: Consumer) -> bool:
        """Wait for ``future`` or a delivery to ``consumer``; True when the future finished first."""
        future.add_done_callback(self._wake_waiters)
        with self._arrived:
            self._waiters += 1
            try:
                self._arrived.wait_for(
                    lambda: bool(consumer.buffer) or future.done(), self.connection.long_timeout
                )
            finally:
                self._waiters -= 1
        return future.done() and not consumer.buffer

    def _wake_waiters(self, _: object = None) -> None:
        with self._arrived:
            self._arrived.notify_all()
