"""What schedules need from RabbitMQ, which cannot look a job up by id: one scheduler, and state.

**The scheduler lease.** Only the worker process whose connection owns the
exclusive queue ``<prefix>scheduler-lease`` enqueues ticks. Every worker tries
to declare it (one round trip per scheduler pass, about once a second); the
broker lets one connection own an exclusive queue and refuses the others
(``RESOURCE_LOCKED``). When the owner's connection closes (the process exits or
is killed: the kernel closes its socket) the broker deletes the queue and the
next worker to try takes over, within about a second; a connection lost without
a close (a network partition) is noticed at the connection heartbeat.

**Shared state.** Each key prefix (``schedule-paused/``, ``schedule-progress``)
is one document, kept as the single message of a durable queue
``<prefix>state.<name>`` with ``x-max-length = 1`` (a new write drops the old
one). A read takes the message and returns it unacknowledged; a write reads,
changes and republishes the document with a publisher confirm. Reads and writes
of one document take turns: each first owns the exclusive queue
``<prefix>state.<name>.lock`` (the lease's mechanism: the broker lets one
connection own it, and drops it with a dead owner's connection) and deletes it
when done, so two operators pausing two schedules at the same instant both
land, and a writer never mistakes a document a reader is holding for none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aio_pika
import aiormq.exceptions as amqp_errors
import msgspec

from oddjob_core.errors import StorageError
from oddjob_core.keyvalue import KeyValueStore, check_key
from oddjob_core.scheduling.lease import SchedulerLease

from .loop import LoopThread

_doc = msgspec.json.Decoder(dict[str, bytes])
_encode = msgspec.json.Encoder().encode


class RabbitScheduling(KeyValueStore, SchedulerLease):
    """Mixed into ``RabbitStorage``; call ``_scheduling_init`` from its constructor."""

    deduplicates_ids = False  # a re-added id is published again: ticks need the lease

    _sched_io: LoopThread
    _sched_conn: Any
    _sched_prefix: str
    _sched_timeout: float
    _lease_channel: Any = None
    _state_turn: asyncio.Lock | None = None

    _sched_url: str

    def _scheduling_init(self, io: LoopThread, url: str, prefix: str, timeout: float) -> None:
        self._sched_io = io
        self._sched_url = url
        self._sched_prefix = prefix
        self._sched_timeout = timeout
        self._sched_conn = None

    async def _sched_connection(self) -> Any:
        """A connection of the scheduler's own: the lease lives and dies with it."""
        if self._sched_conn is None or self._sched_conn.is_closed:
            self._sched_conn = await aio_pika.connect(
                self._sched_url, client_properties={"connection_name": "oddjob-scheduler"}
            )
            self._lease_channel = None
        return self._sched_conn

    def _call(self, coro: Any) -> Any:
        try:
            return self._sched_io.call(coro, self._sched_timeout)
        except TimeoutError:
            raise StorageError("RabbitMQ did not answer in time (scheduler state)") from None
        except (amqp_errors.AMQPError, OSError) as exc:
            raise StorageError(f"RabbitMQ scheduler state: {exc}") from exc

    # -- the lease ------------------------------------------------------------------

    def hold_scheduler_lease(self) -> bool:
        async def hold() -> bool:
            conn = await self._sched_connection()
            if self._lease_channel is None or self._lease_channel.is_closed:
                self._lease_channel = await conn.channel()
            try:
                await self._lease_channel.declare_queue(
                    f"{self._sched_prefix}scheduler-lease", exclusive=True
                )
            except amqp_errors.ChannelLockedResource:
                self._lease_channel = None  # the broker closed the channel with its refusal
                return False
            return True

        held: bool = self._call(hold())
        return held

    def _close_scheduling(self) -> None:
        if self._sched_conn is not None and not self._sched_conn.is_closed:
            try:
                self._sched_io.call(self._sched_conn.close(), 5)
            except Exception:  # closing anyway: the broker drops the lease with the socket
                pass

    # -- shared state ---------------------------------------------------------------

    def _state_queue(self, key_or_prefix: str) -> tuple[str, str]:
        """The document's queue and the key prefix it holds (up to the first '/')."""
        head = key_or_prefix.split("/", 1)[0]
        return f"{self._sched_prefix}state.{head}", head

    async def _open_state(self, channel: Any, name: str) -> Any:
        return await channel.declare_queue(
            name, durable=True, arguments={"x-max-length": 1, "x-overflow": "drop-head"}
        )

    @contextlib.asynccontextmanager
    async def _turn(self, name: str) -> AsyncIterator[Any]:
        """A channel of this process's scheduler connection, alone with document ``name``."""
        if self._state_turn is None:  # made on the loop thread: one turn at a time in a process
            self._state_turn = asyncio.Lock()
        async with self._state_turn:
            conn = await self._sched_connection()
            lock = f"{name}.lock"
            deadline = asyncio.get_running_loop().time() + self._sched_timeout
            while True:
                channel = await conn.channel(publisher_confirms=True)
                try:
                    await channel.declare_queue(lock, exclusive=True)
                    break
                except amqp_errors.ChannelLockedResource:  # another process's turn
                    if asyncio.get_running_loop().time() > deadline:
                        raise StorageError(
                            f"RabbitMQ scheduler state: '{lock}' stayed owned by another "
                            f"connection for {self._sched_timeout:g} s"
                        ) from None
                    await asyncio.sleep(0.02)
            try:
                yield channel
            finally:
                with contextlib.suppress(Exception):  # a closed connection dropped it anyway
                    await channel.queue_delete(lock)
                    await channel.close()

    async def _read_doc(self, channel: Any, name: str) -> dict[str, bytes]:
        queue = await self._open_state(channel, name)
        for _ in range(20):  # a process of an older version may hold the message for a moment
            message = await queue.get(no_ack=False, fail=False)
            if message is not None:
                await message.nack(requeue=True)
                return _doc.decode(message.body)
            info = await channel.declare_queue(name, passive=True)
            if not info.declaration_result.message_count:
                return {}
            await asyncio.sleep(0.05)
        return {}

    def kv_read(self, prefix: str) -> dict[str, bytes]:
        name, _ = self._state_queue(prefix)

        async def read() -> dict[str, bytes]:
            async with self._turn(name) as channel:
                return await self._read_doc(channel, name)

        doc: dict[str, bytes] = self._call(read())
        return {k: v for k, v in doc.items() if k.startswith(prefix)}

    def kv_write(self, items: Mapping[str, bytes | None]) -> None:
        groups: dict[str, dict[str, bytes | None]] = {}
        for key, value in items.items():
            groups.setdefault(self._state_queue(check_key(key))[0], {})[key] = value

        async def write() -> None:
            for name, changes in groups.items():
                async with self._turn(name) as channel:
                    doc = await self._read_doc(channel, name)
                    for key, value in changes.items():
                        if value is None:
                            doc.pop(key, None)
                        else:
                            doc[key] = bytes(value)
                    await channel.default_exchange.publish(
                        aio_pika.Message(
                            _encode(doc), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                        ),
                        routing_key=name,
                    )

        if groups:
            self._call(write())
