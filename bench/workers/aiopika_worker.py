"""Raw aio-pika consumer: prefetch 16, the job on an 8-thread pool, ack after it ran."""

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor

import aio_pika

from bench.jobs import noop


async def main() -> None:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(8)
    connection = await aio_pika.connect_robust(os.environ["BENCH_AMQP_URL_VHOST"])
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=16)
    queue = await channel.declare_queue("bench", durable=True)

    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        i, s = json.loads(message.body)
        await loop.run_in_executor(pool, noop, i, s)
        await message.ack()

    await queue.consume(handle)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
