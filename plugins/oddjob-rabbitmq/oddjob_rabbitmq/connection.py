"""The AMQP connection of one storage and the asyncio loop thread that owns it.

Connects, reconnects with backoff after a loss, hands out channels (a plain one
per topology or management call, one long-lived publisher channel with
confirms) and knows the broker's version. The storage's sync methods run
coroutines here with ``call`` / ``submit``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import aio_pika
import aio_pika.abc
import aiormq.abc

from oddjob_core.errors import StorageUnavailable

from .loop import LoopThread
from .options import RabbitOptions
from .urls import redact, scrub

log = logging.getLogger("oddjob.rabbitmq")

T = TypeVar("T")

#: longest wait between reconnect attempts: jobs wait meanwhile (30 s made recovery after
#: a long outage take up to 30 s; 5 s costs the broker one connect attempt per 5 s)
RECONNECT_CAP = 5.0

CONSUMER_TIMEOUT_HELP = (
    "RabbitMQ closed the channel because a delivery stayed unacknowledged longer than its "
    "consumer_timeout (30 minutes by default): a job ran longer than that, so the broker "
    "requeued every job of that channel and may run them again. For long jobs raise the "
    "limit: on RabbitMQ >= 3.12 set the rabbitmq option consumer_timeout (seconds; oddjob "
    "declares x-consumer-timeout on the work queue) or a 'consumer-timeout' policy; on older "
    "brokers set consumer_timeout in rabbitmq.conf"
)


def describe(exc: BaseException | None) -> str:
    """Why a connection or channel closed, with the fix for a consumer timeout."""
    if exc is None:
        return "closed"
    text = str(exc) or type(exc).__name__
    if "PRECONDITION_FAILED" in text and "acknowledg" in text and "timed out" in text:
        return f"{text} ({CONSUMER_TIMEOUT_HELP})"
    return text


class Connection:
    """One AMQP connection, reconnected after a loss, and its loop thread."""

    def __init__(
        self,
        options: RabbitOptions,
        *,
        on_connected: Callable[[], Awaitable[None]],
        on_lost: Callable[[str], None],
    ) -> None:
        self.options = options
        self.where = redact(options.url)
        self.server_version = ""
        self.last_error = ""
        self.closing = False  # set by the storage's shutdown: no reconnect after this
        self.amqp: aio_pika.abc.AbstractConnection | None = None
        self.io = LoopThread("oddjob-rabbitmq-io")
        self._on_connected = on_connected
        self._on_lost = on_lost
        self._publisher: aiormq.abc.AbstractChannel | None = None
        self._reconnecting = False
        self.connected = asyncio.Event()

    # -- running coroutines from sync code -----------------------------------------

    @property
    def long_timeout(self) -> float:
        """How long a sync call waits for the loop: publishing may retry until publish_timeout."""
        return self.options.publish_timeout + 60.0

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait (``long_timeout`` unless given)."""
        return self.io.call(coro, self.long_timeout if timeout is None else timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` on the loop without waiting."""
        return self.io.submit(coro)

    # -- connecting ------------------------------------------------------------------

    def open(self) -> None:
        """Connect for the first time; ``StorageUnavailable`` naming the broker if it fails."""
        try:
            self.io.call(self._first_connect(), self.options.connect_timeout + 5)
        except TimeoutError:
            self.io.stop()
            raise StorageUnavailable(
                f"RabbitMQ at {self.where} did not answer within "
                f"{self.options.connect_timeout:g} s; is the broker running and reachable?"
            ) from None
        except BaseException:
            self.io.stop()
            raise

    async def _first_connect(self) -> None:
        self.connected = asyncio.Event()
        try:
            await self._connect_once()
        except Exception as exc:
            raise StorageUnavailable(
                f"cannot connect to RabbitMQ at {self.where}: "
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
            underlay = self._underlay(conn)
            version = underlay.server_properties.get("version", b"")
            self.server_version = version.decode() if isinstance(version, bytes) else str(version)
            channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
            publisher = await channel.get_underlay_channel()
        except BaseException:
            await conn.close()
            raise
        self.amqp = conn
        self._publisher = publisher

        def closed(fut: asyncio.Future[Any]) -> None:
            self._lost(conn, fut)

        underlay.closing.add_done_callback(closed)
        self.connected.set()
        await self._on_connected()

    @staticmethod
    def _underlay(conn: aio_pika.abc.AbstractConnection) -> aiormq.abc.AbstractConnection:
        transport = getattr(conn, "transport", None)
        assert transport is not None, "aio-pika connection without a transport"
        underlay: aiormq.abc.AbstractConnection = transport.connection
        return underlay

    def drop(self, reason: BaseException) -> Awaitable[Any]:
        """Close the socket as a network loss would (tests of reconnecting)."""
        assert self.amqp is not None
        return self._underlay(self.amqp).close(reason)

    def _lost(self, conn: aio_pika.abc.AbstractConnection, fut: asyncio.Future[Any]) -> None:
        if conn is not self.amqp:
            return
        self.connected.clear()
        exc = None if fut.cancelled() else fut.exception()
        self.last_error = scrub(describe(exc), self.options.url)
        self._on_lost(f"the connection to RabbitMQ was lost ({self.last_error})")
        if self.closing:
            return
        log.warning(
            "connection to RabbitMQ at %s lost: %s; reconnecting", self.where, self.last_error
        )
        if not self._reconnecting:
            self._reconnecting = True
            asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        interval = max(0.1, self.options.reconnect_interval)
        try:
            while not self.closing:
                await asyncio.sleep(interval)
                try:
                    await self._connect_once()
                except Exception as exc:
                    self.last_error = scrub(str(exc) or type(exc).__name__, self.options.url)
                    log.warning(
                        "reconnecting to RabbitMQ at %s failed: %s; next try in %.1f s",
                        self.where,
                        self.last_error,
                        min(interval * 2, RECONNECT_CAP),
                    )
                    interval = min(interval * 2, RECONNECT_CAP)
                    continue
                log.info("reconnected to RabbitMQ at %s", self.where)
                return
        finally:
            self._reconnecting = False

    async def wait_connected(self, deadline: float) -> None:
        """Return once connected; ``StorageUnavailable`` if still down at ``deadline``."""
        if self.connected.is_set():
            return
        remaining = deadline - time.monotonic()
        try:
            await asyncio.wait_for(self.connected.wait(), max(0.0, remaining))
        except TimeoutError:
            raise StorageUnavailable(
                f"RabbitMQ at {self.where} is unreachable ({self.last_error or 'disconnected'}); "
                f"gave up after {self.options.publish_timeout:g} s (publish_timeout): nothing "
                "unconfirmed is reported as stored"
            ) from None

    # -- channels --------------------------------------------------------------------

    async def channel(self) -> aio_pika.abc.AbstractChannel:
        """A fresh plain channel for topology and management calls (closed by the caller)."""
        await self.wait_connected(time.monotonic() + self.options.publish_timeout)
        assert self.amqp is not None
        return await self.amqp.channel(publisher_confirms=False)

    async def publisher_channel(self, deadline: float) -> aiormq.abc.AbstractChannel:
        """The channel with publisher confirms (reopened when it closed)."""
        await self.wait_connected(deadline)
        if self._publisher is None or self._publisher.is_closed:
            assert self.amqp is not None
            channel = await self.amqp.channel(publisher_confirms=True, on_return_raises=True)
            self._publisher = await channel.get_underlay_channel()
        return self._publisher

    async def close(self) -> None:
        """Stop reconnecting and close the connection."""
        self.closing = True
        if self.amqp is not None:
            try:
                await self.amqp.close()
            except Exception as exc:
                log.debug("closing connection: %s", exc)

    def stop(self) -> None:
        """Stop the loop thread (after ``close``)."""
        self.io.stop()


def version_tuple(text: str) -> tuple[int, ...]:
    """``"3.13.7"`` -> ``(3, 13, 7)`` (non-digits ignored)."""
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
