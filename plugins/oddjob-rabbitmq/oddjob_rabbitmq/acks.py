"""Acks of finished jobs: queued by any thread, written by the loop, coalesced per channel.

The loop writes queued acks at its next wake-up, coalesced into one
``multiple`` ack per channel where that is safe (``ack_plan``), and ``flush``
writes what is left before the connection closes.

Successes wait for their acks to be written: "outcome before hooks" holds on
RabbitMQ too. basic.ack has no reply, so ``complete_many`` hands its acks over
with an ``AckWaiter`` and returns once the loop has written them to the socket;
an ack that could not be written (its channel closed) is reported for its job,
which RabbitMQ delivers again, and no hook fires for it.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import uuid
import weakref

import aiormq.abc

from oddjob_core.errors import StorageError, StorageUnavailable

from .connection import Connection

log = logging.getLogger("oddjob.rabbitmq")

Channel = aiormq.abc.AbstractChannel


def ack_plan(tags: list[int], unsettled: set[int]) -> list[tuple[int, bool]]:
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


class AckWaiter:
    """The acks of one ``complete_many`` call, and whether each was written."""

    def __init__(self, acks: list[tuple[Channel, int]], ids: list[uuid.UUID]) -> None:
        self.acks = acks
        self.ids = ids
        self._done = threading.Event()
        self._unwritten: set[int] = set()

    def settle(self, failed_channels: set[int] | None) -> None:
        """Loop thread: the write is over; ``failed_channels`` (``id()``s) lost theirs (None: all)."""
        for i, (channel, _) in enumerate(self.acks):
            if failed_channels is None or id(channel) in failed_channels:
                self._unwritten.add(i)
        self._done.set()

    def errors(self, timeout: float) -> dict[uuid.UUID, StorageError]:
        """Wait for the write; the jobs whose ack was not written, each with its error."""
        if not self._done.wait(timeout):
            self._unwritten = set(range(len(self.acks)))
        return {
            self.ids[i]: StorageError(
                f"the ack of job {self.ids[i]} was not written (its channel closed or the "
                "write timed out); RabbitMQ delivers the job again"
            )
            for i in sorted(self._unwritten)
        }


class Acks:
    """The ack queue of one storage and the delivered-but-unacked tags of each consumer channel."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._lock = threading.Lock()
        self._queued: list[tuple[Channel, int]] = []
        self._waiters: list[AckWaiter] = []  # complete_many calls waiting for their write
        self._writing = False
        self._closed = False
        # per consumer channel: delivered tags not acked yet (loop thread only)
        self._unsettled: weakref.WeakKeyDictionary[Channel, set[int]] = weakref.WeakKeyDictionary()

    def track(self, channel: Channel) -> set[int]:
        """The set a consumer adds each delivered tag of ``channel`` to (loop thread)."""
        unsettled: set[int] = set()
        self._unsettled[channel] = unsettled
        return unsettled

    def queue(self, acks: list[tuple[Channel, int]], waiter: AckWaiter | None = None) -> None:
        """Hand acks to the loop; wake it only when no writer is running already."""
        if not acks:
            return
        with self._lock:
            if self._closed:
                raise StorageUnavailable(
                    "the storage is closed before the job's ack was written; RabbitMQ delivers "
                    "the job again"
                )
            self._queued.extend(acks)
            if waiter is not None:
                self._waiters.append(waiter)
            if self._writing:
                return  # the running writer picks them up
            self._writing = True
        loop = self.connection.io.loop
        loop.call_soon_threadsafe(lambda: loop.create_task(self._write()))

    def close(self) -> None:
        """Refuse further acks (the storage is closing); ``flush`` writes the queued ones."""
        with self._lock:
            self._closed = True

    async def _write(self, *, drain: bool = False) -> None:
        """Write queued acks until none is left (loop thread; one writer at a time).

        A write stuck on a dead connection (aiormq's frame queue is bounded) is
        given up after ``publish_timeout``, so later acks are never held behind it.
        """
        timeout = self.connection.options.publish_timeout
        while True:
            with self._lock:
                items, self._queued = self._queued, []
                waiters, self._waiters = self._waiters, []
                if not items:
                    self._writing = False
                    for waiter in waiters:
                        waiter.settle(set())
                    return
            failed: set[int] | None
            try:  # asyncio.timeout, not wait_for: no extra task per write
                async with asyncio.timeout(timeout):
                    failed = await self._send(items, drain=drain or bool(waiters))
            except TimeoutError:
                failed = None
                log.warning(
                    "%d ack(s) were not written within %g s (publish_timeout); RabbitMQ "
                    "delivers those jobs again",
                    len(items),
                    timeout,
                )
            for waiter in waiters:
                waiter.settle(failed)

    async def _send(self, items: list[tuple[Channel, int]], *, drain: bool) -> set[int]:
        """Ack ``items`` per channel, coalesced; ``drain``: wait until written to the socket.

        Returns the ``id()`` of every channel whose acks were not written.
        """
        failed: set[int] = set()
        by_channel: dict[int, tuple[Channel, list[int]]] = {}
        for channel, tag in items:
            by_channel.setdefault(id(channel), (channel, []))[1].append(tag)
        for channel, tags in by_channel.values():
            if channel.is_closed:
                failed.add(id(channel))
                continue  # the broker redelivers them
            unsettled = self._unsettled.get(channel)
            plan = (
                ack_plan(tags, unsettled) if unsettled is not None else [(t, False) for t in tags]
            )
            last = len(plan) - 1
            try:
                for i, (tag, multiple) in enumerate(plan):
                    await channel.basic_ack(tag, multiple=multiple, wait=drain and i == last)
            except Exception as exc:
                failed.add(id(channel))
                log.debug("acks on a closing channel were not written (%s); redelivered", exc)
        return failed

    async def ack(self, channel: Channel, tag: int | None) -> None:
        """Ack one delivery now (after an outcome's publish was confirmed)."""
        if tag is None:
            raise StorageError("a delivery without a delivery tag cannot be acknowledged")
        await channel.basic_ack(tag)
        unsettled = self._unsettled.get(channel)
        if unsettled is not None:
            unsettled.discard(tag)  # only now: a later multiple ack must not cover it earlier

    async def flush(self) -> None:
        """Write every queued ack before closing, so a clean shutdown causes no redeliveries.

        The last frame is drained to the socket; a basic.cancel sent next on a
        consumer channel is answered only after the broker processed the acks.
        """
        while True:
            with self._lock:
                writing = self._writing
                if not writing:
                    self._writing = True  # keep late complete() calls from starting a writer
            if not writing:
                break
            await asyncio.sleep(0.001)  # a writer task is running: let it finish
        await self._write(drain=True)
