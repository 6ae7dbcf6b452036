"""The raw AMQP limit, on aiormq (the protocol layer under aio-pika).

Publisher: one channel in confirm mode, persistent messages, a batch published
concurrently and confirmed together. Consumer: prefetch 46 (what oddjob-rabbitmq
picks automatically for 8 workers), the job run right on the event loop, acks
coalesced: one ``multiple`` ack for everything delivered so far, sent whenever
the loop has nothing else to do or 32 deliveries wait.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence

import aiormq
import aiormq.abc

from bench.jobs import noop

QUEUE = "bench"
PREFETCH = 46
ACK_EVERY = 32
PERSISTENT = aiormq.spec.Basic.Properties(delivery_mode=2, content_type="application/json")


class Publisher:
    """A confirming channel on its own connection."""

    def __init__(
        self, connection: aiormq.abc.AbstractConnection, channel: aiormq.abc.AbstractChannel
    ) -> None:
        self.connection, self.channel = connection, channel

    @classmethod
    async def open(cls, url: str) -> Publisher:
        connection = await aiormq.connect(url)
        channel = await connection.channel(publisher_confirms=True)
        await channel.queue_declare(QUEUE, durable=True)
        return cls(connection, channel)

    async def publish(self, items: Sequence[int]) -> None:
        await asyncio.gather(
            *(
                self.channel.basic_publish(
                    json.dumps([i, "x"]).encode(),
                    routing_key=QUEUE,
                    properties=PERSISTENT,
                    mandatory=True,
                )
                for i in items
            )
        )

    async def close(self) -> None:
        await self.connection.close()


async def consume(url: str) -> None:
    connection = await aiormq.connect(url)
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=int(os.environ.get("BENCH_AMQP_PREFETCH", PREFETCH)))
    await channel.queue_declare(QUEUE, durable=True)
    loop = asyncio.get_running_loop()
    pending = {"last": 0, "count": 0, "scheduled": False}
    acks: set[asyncio.Task[None]] = set()

    def flush() -> None:
        pending["scheduled"] = False
        if pending["count"]:
            tag, pending["count"] = pending["last"], 0
            task = loop.create_task(channel.basic_ack(tag, multiple=True))
            acks.add(task)
            task.add_done_callback(acks.discard)

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        i, s = json.loads(message.body)
        noop(i, s)
        pending["last"] = message.delivery_tag
        pending["count"] += 1
        if pending["count"] >= ACK_EVERY:
            flush()
        elif not pending["scheduled"]:
            pending["scheduled"] = True
            loop.call_soon(flush)  # after the deliveries already read are handled

    await channel.basic_consume(QUEUE, on_message, no_ack=False)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(consume(os.environ["BENCH_AMQP_URL_VHOST"]))
