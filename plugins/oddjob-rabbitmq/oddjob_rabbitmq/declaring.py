"""The broker objects of each oddjob queue: built once, declared when first used, counted.

AMQP cannot list queues, so ``known`` remembers the queues this instance used
or was configured with; management calls without a queue look at those.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import aio_pika
import aiormq.exceptions as amqp_errors

from oddjob_core.errors import ConfigError

from . import topology as topo
from .connection import Connection
from .options import RabbitOptions


def topology_of(o: RabbitOptions, queue: str) -> topo.Topology:
    """The broker objects the options give oddjob queue ``queue``; ``ConfigError`` if invalid."""
    try:
        return topo.build(
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


class Topologies:
    """Builds, declares (idempotently, once per queue and kind), counts and deletes topologies."""

    def __init__(self, options: RabbitOptions, connection: Connection) -> None:
        self.options = options
        self.connection = connection
        self.known: set[str] = set(options.queues or ("default",))
        self._built: dict[str, topo.Topology] = {}
        self._declared: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()

    def declared_all(self, ladders: dict[str, bool]) -> bool:
        """Whether every queue (and its ladder where wanted) was declared (always without declare)."""
        if not self.options.declare:
            return True
        declared = self._declared
        return all(
            ("base", q) in declared and (not ladder or ("ladder", q) in declared)
            for q, ladder in ladders.items()
        )

    def of(self, queue: str) -> topo.Topology:
        """The broker objects of oddjob queue ``queue`` (names and arguments)."""
        found = self._built.get(queue)
        if found is None:
            found = self._built[queue] = topology_of(self.options, queue)
        return found

    def queue_of(self, amqp_queue: str) -> str | None:
        """The oddjob queue whose work or failed queue is ``amqp_queue``."""
        for name, t in list(self._built.items()):
            if amqp_queue in (t.work.name, t.failed.name):
                return name
        return None

    def declare(self, queues: Iterable[str], *, ladder: bool = True) -> list[topo.Topology]:
        """Declare (idempotently) the work, failed and delay-ladder objects of ``queues``."""
        done = []
        for queue in queues:
            t = self.of(queue)
            self.connection.call(self._declare(t, ladder=ladder, force=True))
            done.append(t)
        return done

    async def ensure(self, queue: str, *, ladder: bool) -> topo.Topology:
        """The topology of ``queue``, declared first if ``declare`` is on and not done yet."""
        t = self.of(queue)
        self.known.add(queue)
        if self.options.declare:
            await self._declare(t, ladder=ladder, force=False)
        return t

    def forget(self, queue: str) -> None:
        """Declare ``queue`` again on next use (someone deleted it)."""
        self._declared.discard(("base", queue))
        self._declared.discard(("ladder", queue))

    async def _declare(self, t: topo.Topology, *, ladder: bool, force: bool) -> None:
        want = [("base", t.queue)] + ([("ladder", t.queue)] if ladder else [])
        if not force and all((k, q) in self._declared for k, q in want):
            return
        async with self._lock:
            if not force and all((k, q) in self._declared for k, q in want):
                return
            channel = await self.connection.channel()
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
                    f"RabbitMQ refused to declare '{what}' on {self.connection.where}: {exc}. "
                    "It exists with other arguments (e.g. a classic queue where oddjob expects a "
                    "quorum queue, or another delay_levels/delivery_limit): delete it (when "
                    "empty) or make the rabbitmq options (queue_type, delay_levels, "
                    "delivery_limit, consumer_timeout, prefix) match it"
                ) from None
            except amqp_errors.ChannelAccessRefused as exc:
                raise ConfigError(
                    f"RabbitMQ user may not declare '{what}' on {self.connection.where}: {exc}. "
                    "Run `oddjob rabbitmq declare` as a user with configure permission and set "
                    "the rabbitmq option declare = false"
                ) from None
            finally:
                if not channel.is_closed:
                    await channel.close()
            self._declared.update(want)

    # -- counting and deleting ---------------------------------------------------------

    async def message_counts(self, names: Sequence[str]) -> list[int]:
        """Ready messages per queue (0 for a missing queue), by passive declares.

        One after the other on one channel (reopened after a missing queue closed
        it): opening a channel per queue concurrently made the broker close the
        whole connection ("second 'channel.open' seen").
        """
        channel = await self.connection.channel()
        raw = await channel.get_underlay_channel()
        counts = []
        try:
            for name in names:
                try:
                    ok = await raw.queue_declare(name, passive=True)
                    counts.append(int(ok.message_count or 0))
                except amqp_errors.ChannelNotFoundEntity:
                    counts.append(0)
                    channel = await self.connection.channel()
                    raw = await channel.get_underlay_channel()
        finally:
            if not channel.is_closed:
                await channel.close()
        return counts

    async def queue_counts(self, queue: str) -> tuple[int, int, int]:
        """(ready, in the delay ladder, failed) of ``queue``; counting never creates queues."""
        t = self.of(queue)
        self.known.add(queue)
        names = [t.work.name, t.failed.name, *(q.name for q in t.delay_queues)]
        counts = await self.message_counts(names)
        return counts[0], sum(counts[2:]), counts[1]

    async def purge(self, names: Sequence[str]) -> int:
        """Empty the AMQP queues ``names``; how many messages they held."""
        channel = await self.connection.channel()
        try:
            raw = await channel.get_underlay_channel()
            total = 0
            for name in names:
                ok = await raw.queue_purge(name)
                total += int(ok.message_count or 0)
            return total
        finally:
            if not channel.is_closed:
                await channel.close()

    def delete(self, queues: Iterable[str]) -> None:
        """Delete the queues and exchanges of ``queues`` with every message in them."""

        async def go(t: topo.Topology) -> None:
            channel = await self.connection.channel()
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
            self.connection.call(go(self.of(q)))
            self.forget(q)
