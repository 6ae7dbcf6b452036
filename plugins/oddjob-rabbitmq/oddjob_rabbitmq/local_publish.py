"""Enqueues published from the caller's own thread, without the hop to the loop thread.

``add`` on the storage's loop thread costs two thread switches per call (the
hand-off and the wake-up of the waiting caller); on a busy machine each can
take milliseconds. Here every producer thread gets its own connection, a
confirming channel and a small event loop that runs only while that thread
publishes: the publish and the wait for its publisher confirm happen on the
caller's thread (Dramatiq does the same with pika, a connection per thread).

Durability is the loop thread's: persistent messages, ``mandatory``, and a
message counts as stored only once the broker acked it. Everything else (a
nack, a return as unroutable, a lost connection, a timeout) is handed back to
the caller, which publishes those messages again through the loop thread's
full path (reconnects, redeclares, error reports). A message whose confirm
was lost may so be stored twice: at-least-once, as on any reconnect.

The connections do not heartbeat (their loop sleeps between publishes): a
dead one shows at the next publish, whose messages then take the full path,
and the thread connects again afterwards. Connections of threads that ended
are closed when another thread connects; all are closed with the storage.
A thread connects only at its third publish (``WARM_UP``): a web server that
starts a thread per request, each enqueuing once, would otherwise open and
drop a connection per request; those calls take the loop thread's path.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import aiormq
from pamqp import commands as spec
from yarl import URL

log = logging.getLogger("oddjob.rabbitmq")

WARM_UP = 2  # publishes a thread makes through the loop thread before it connects


class Message(Protocol):
    """What is published: ``_Out`` of the storage."""

    @property
    def exchange(self) -> str: ...
    @property
    def routing_key(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def properties(self) -> spec.Basic.Properties: ...


M = TypeVar("M", bound=Message)


class _Local:
    """One producer thread's loop, connection and confirming channel."""

    __slots__ = ("channel", "conn", "lock", "loop", "retry_at", "thread")

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()  # held while the loop runs (owner publishing, or closing)
        self.thread = threading.current_thread()
        self.conn: Any = None
        self.channel: Any = None
        self.retry_at = 0.0  # after a failed connect: no new try before this


class ThreadPublisher:
    """Publishes from the calling thread over a connection of its own (thread-safe)."""

    def __init__(
        self, url: str, *, connect_timeout: float, publish_timeout: float, retry_interval: float
    ) -> None:
        self._url = str(URL(url).update_query(heartbeat=0))
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._retry_interval = max(0.1, retry_interval)
        self._tls = threading.local()
        self._lock = threading.Lock()
        self._locals: list[_Local] = []
        self._closed = False
        self.connections = 0  # connections opened (for tests)

    def publish(self, outs: Sequence[M]) -> list[M]:
        """Publish ``outs`` here; return those not confirmed (all of them when it cannot try)."""
        if self._closed or _loop_running():
            return list(outs)
        local: _Local | None = getattr(self._tls, "local", None)
        if local is None:
            seen = getattr(self._tls, "seen", 0)
            if seen < WARM_UP:
                self._tls.seen = seen + 1
                return list(outs)
            local = self._new_local()
            if local is None:
                return list(outs)
        with local.lock:
            if local.loop.is_closed():
                return list(outs)
            if local.channel is None and time.monotonic() < local.retry_at:
                return list(outs)
            try:
                return local.loop.run_until_complete(self._publish(local, outs))
            except Exception as exc:  # the connection is unusable: the full path publishes
                log.debug("publishing from thread %s failed: %s", local.thread.name, exc)
                self._drop(local)
                return list(outs)

    async def _publish(self, local: _Local, outs: Sequence[M]) -> list[M]:
        if local.channel is None or local.channel.is_closed:
            await self._connect(local)
        channel = local.channel
        async with asyncio.timeout(self._publish_timeout):
            results = await publish_all(channel, outs)
        left = [o for o, r in zip(outs, results, strict=True) if not isinstance(r, spec.Basic.Ack)]
        # a lost or closed channel: start afresh next time (a nack or a return keeps it)
        if any(isinstance(r, BaseException) for r in results) and (
            channel.is_closed or local.conn is None or local.conn.is_closed
        ):
            self._drop(local)
        return left

    async def _connect(self, local: _Local) -> None:
        self._drop(local)
        try:
            async with asyncio.timeout(self._connect_timeout):
                conn = await aiormq.connect(
                    self._url, client_properties={"connection_name": "oddjob-rabbitmq-producer"}
                )
                try:
                    channel = await conn.channel(publisher_confirms=True, on_return_raises=True)
                except BaseException:
                    await conn.close()
                    raise
        except BaseException:
            local.retry_at = time.monotonic() + self._retry_interval
            raise
        local.conn, local.channel = conn, channel
        self.connections += 1

    def _drop(self, local: _Local) -> None:
        """Forget the connection (closed at once without waiting: the loop is ours)."""
        conn, local.conn, local.channel = local.conn, None, None
        if conn is not None and not conn.is_closed:
            local.loop.create_task(_quiet_close(conn))

    def publishers(self) -> list[_Local]:
        """The producer threads' publishers now (their loop, connection and channel)."""
        with self._lock:
            return list(self._locals)

    def _new_local(self) -> _Local | None:
        local = _Local()
        with self._lock:
            if self._closed:
                local.loop.close()
                return None
            ended = [one for one in self._locals if not one.thread.is_alive()]
            self._locals = [one for one in self._locals if one.thread.is_alive()]
            self._locals.append(local)
        self._tls.local = local
        for one in ended:
            _dispose(one)
        return local

    def close(self) -> None:
        """Close every thread's connection (waits for publishes under way)."""
        with self._lock:
            self._closed = True
            locals_, self._locals = self._locals, []
        if not locals_:
            return

        # a loop cannot run in a thread that runs one already (close from async code)
        def dispose_all() -> None:
            for one in locals_:
                _dispose(one)

        closer = threading.Thread(target=dispose_all, name="oddjob-rabbitmq-close")
        closer.start()
        closer.join(15)


async def publish_all(channel: Any, outs: Sequence[Message]) -> list[Any]:
    """Publish persistent ``mandatory`` messages at once; each one's confirm, or its error."""
    return await asyncio.gather(
        *(
            channel.basic_publish(
                o.body,
                exchange=o.exchange,
                routing_key=o.routing_key,
                properties=o.properties,
                mandatory=True,
            )
            for o in outs
        ),
        return_exceptions=True,
    )


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _quiet_close(conn: Any) -> None:
    try:
        await conn.close()
    except Exception as exc:
        log.debug("closing a producer connection: %s", exc)


def _dispose(local: _Local) -> None:
    """Close a thread's connection and loop (from any thread that runs no loop)."""
    with local.lock:
        loop = local.loop
        if loop.is_closed():
            return
        conn, local.conn, local.channel = local.conn, None, None
        try:
            if conn is not None:
                loop.run_until_complete(asyncio.wait_for(_quiet_close(conn), 5))
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        except Exception as exc:
            log.debug("closing a producer loop: %s", exc)
        finally:
            loop.close()
