"""Throughput sanity check: oddjob-rabbitmq against raw aio-pika on the same broker, one run.

    python plugins/oddjob-rabbitmq/bench/sanity.py [N]

Needs ``rabbitmqctl`` (creates and deletes a vhost per run). The real, side-by-side
benchmark is ``nox -s bench``; this script is for checking a change quickly:
batch enqueue (1,000 per call, pipelined confirms) and drain with 8 worker
threads (oddjob: the 'threads' engine in this process; raw: prefetch 16 and an
8-thread pool, ack after the job), classic and quorum queues.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aio_pika

BATCH = 1000
_done = threading.Event()
_count = 0
_first = _last = 0.0
_lock = threading.Lock()
_target = 0


def noop(i: int, s: str) -> None:
    """The job: count executions, note the first and last time."""
    global _count, _first, _last
    with _lock:
        _count += 1
        now = time.perf_counter()
        if _count == 1:
            _first = now
        _last = now
        if _count >= _target:
            _done.set()


def _reset(target: int) -> None:
    global _count, _target
    _count, _target = 0, target
    _done.clear()


def vhost(name: str, create: bool) -> str:
    if create:
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
            check=True,
        )
    else:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False)
    return f"amqp://guest:guest@127.0.0.1:5672/{name}"


async def raw(url: str, n: int, quorum: bool) -> tuple[float, float]:
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    args = {"x-queue-type": "quorum"} if quorum else {}
    await channel.declare_queue("bench", durable=True, arguments=args)
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(
                        json.dumps([i, "x"]).encode(),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    "bench",
                )
                for i in range(start, min(n, start + BATCH))
            )
        )
    enqueue = n / (time.perf_counter() - t0)
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(8)
    consumer = await connection.channel()
    await consumer.set_qos(prefetch_count=16)
    q = await consumer.get_queue("bench")
    _reset(n)

    async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        i, s = json.loads(message.body)
        await loop.run_in_executor(pool, noop, i, s)
        await message.ack()

    await q.consume(handle)
    await loop.run_in_executor(None, _done.wait)
    drain = (n - 1) / (_last - _first)
    await connection.close()
    pool.shutdown()
    return enqueue, drain


def oddjob(url: str, n: int, queue_type: str) -> tuple[float, float]:
    import sanity

    from oddjob_core import Oddjob, call

    options: dict[str, Any] = {"url": url, "queue_type": queue_type}
    app = Oddjob(storage="rabbitmq", rabbitmq=options, allowed_prefixes=["sanity"])
    app.storage  # connect before timing  # noqa: B018
    app.enqueue_many([call(sanity.noop, -1, "warm-up")])
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        app.enqueue_many([call(sanity.noop, i, "x") for i in range(start, min(n, start + BATCH))])
    enqueue = n / (time.perf_counter() - t0)
    sanity._reset(n + 1)
    worker = threading.Thread(
        target=app.run_worker,
        kwargs={"queues": ["default"], "workers": 8, "burst": True, "handle_signals": False},
    )
    worker.start()
    sanity._done.wait()
    drain = (n - 1) / (sanity._last - sanity._first)
    worker.join(60)
    app.close()
    return enqueue, drain


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    for kind in ("classic", "quorum"):
        for system in ("raw aio-pika", "oddjob-rabbitmq"):
            if only and only not in f"{kind} {system}":
                continue
            name = f"sanity_{secrets.token_hex(3)}"
            url = vhost(name, True)
            try:
                if system == "raw aio-pika":
                    enq, drain = asyncio.run(raw(url, n, kind == "quorum"))
                else:
                    enq, drain = oddjob(url, n, kind)
            finally:
                vhost(name, False)
            print(f"{kind:8} {system:16} enqueue {enq:7.0f}/s  drain {drain:7.0f}/s", flush=True)


if __name__ == "__main__":
    main()
