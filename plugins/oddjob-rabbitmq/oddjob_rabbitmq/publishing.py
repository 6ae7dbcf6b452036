"""Publishing with publisher confirms: pipelined, retried across reconnects, unroutable re-declared."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import aiormq.exceptions as amqp_errors
from pamqp import commands as spec

from oddjob_core.errors import StorageError, StorageUnavailable

from .connection import Connection
from .declaring import Topologies
from .local_publish import Message
from .messages import Out
from .urls import scrub

log = logging.getLogger("oddjob.rabbitmq")

#: errors after which a message is published again (the channel or connection went away)
_RETRYABLE = (
    amqp_errors.AMQPError,
    ConnectionError,
    asyncio.CancelledError,
    amqp_errors.ChannelInvalidStateError,
    OSError,
    TimeoutError,
)


class Publisher:
    """Publishes messages and waits for their confirms; a confirmed message is stored."""

    def __init__(self, connection: Connection, topologies: Topologies) -> None:
        self.connection = connection
        self.topologies = topologies
        self.options = connection.options

    def publish_now(
        self, outs: list[Out], ladders: dict[str, bool], deadline: float | None = None
    ) -> None:
        """Declare what ``ladders`` names (queue -> with its delay ladder), then publish ``outs``.

        ``deadline`` (monotonic): when to give up, ``publish_timeout`` from now by default.
        """

        async def go() -> None:
            for queue, ladder in ladders.items():
                await self.topologies.ensure(queue, ladder=ladder)
            await self.publish(outs, deadline=deadline)

        try:
            self.connection.call(go())
        except TimeoutError:
            raise StorageUnavailable(
                f"RabbitMQ at {self.connection.where} did not confirm {len(outs)} message(s) in "
                "time; they may or may not be stored"
            ) from None

    async def publish(
        self, outs: list[Out], *, redeclared: bool = False, deadline: float | None = None
    ) -> None:
        """Publish every message and wait for all confirms together (pipelined).

        Unconfirmed messages are published again after a reconnect, until
        ``publish_timeout``. Nacked ones raise at once. Unroutable ones (the
        queue or exchange is missing: deleted by someone) are declared again
        and published once more when ``declare`` is on, else they raise.
        """
        where = self.connection.where
        if deadline is None:
            deadline = time.monotonic() + self.options.publish_timeout
        pending = outs
        unroutable: list[tuple[Out, str]] = []
        while pending:
            channel = await self.connection.publisher_channel(deadline)
            results = await publish_all(channel, pending)
            retry: list[Out] = []
            for out, result in zip(pending, results, strict=True):
                if isinstance(result, spec.Basic.Ack):
                    continue
                if isinstance(result, spec.Basic.Nack):
                    raise StorageError(
                        f"RabbitMQ refused (nack) job {out.job_id} for queue '{out.target_queue}' "
                        f"on {where}: the queue may be over its length limit or a node "
                        "is unavailable; the job was not stored"
                    )
                if isinstance(result, amqp_errors.PublishError):
                    unroutable.append(
                        (
                            out,
                            f"RabbitMQ could not route job {out.job_id} to queue "
                            f"'{out.target_queue}' on {where} (returned as unroutable): "
                            "the queue or its bindings do not exist",
                        )
                    )
                    continue
                if isinstance(result, amqp_errors.ChannelNotFoundEntity):
                    unroutable.append(
                        (
                            out,
                            f"RabbitMQ has no exchange '{out.exchange}' for job {out.job_id} "
                            f"(queue '{out.target_queue}') on {where}",
                        )
                    )
                    continue
                if isinstance(result, amqp_errors.ChannelAccessRefused):
                    raise StorageError(
                        f"RabbitMQ user may not publish to '{out.exchange or out.target_queue}' "
                        f"on {where}: {result}"
                    )
                if isinstance(result, BaseException) and not isinstance(result, _RETRYABLE):
                    raise StorageError(
                        f"publishing job {out.job_id} to RabbitMQ at {where} failed: "
                        f"{scrub(str(result), self.options.url)}"
                    ) from result
                retry.append(out)
            if retry:
                if time.monotonic() >= deadline:
                    raise StorageUnavailable(
                        f"RabbitMQ at {where} did not confirm {len(retry)} message(s) "
                        f"within {self.options.publish_timeout:g} s (publish_timeout): "
                        f"{self.connection.last_error or 'connection lost'}; they may or may "
                        "not be stored"
                    )
                log.warning(
                    "publishing %d message(s) to %s failed (%s); trying again",
                    len(retry),
                    where,
                    self.connection.last_error or "channel closed",
                )
                await asyncio.sleep(0.2)
            pending = retry
        if not unroutable:
            return
        if self.options.declare and not redeclared:
            vanished = {self.topologies.queue_of(out.target_queue) for out, _ in unroutable}
            for queue in vanished - {None}:
                assert queue is not None
                self.topologies.forget(queue)
                log.warning("queue '%s' vanished from %s; declaring it again", queue, where)
                await self.topologies.ensure(queue, ladder=True)
            await self.publish([out for out, _ in unroutable], redeclared=True, deadline=deadline)
            return
        raise StorageError(
            f"{unroutable[0][1]}; run `oddjob rabbitmq declare` or set the rabbitmq option "
            "declare = true"
        )


def _publish_one(channel: Any, o: Message) -> Any:
    return channel.basic_publish(
        o.body,
        exchange=o.exchange,
        routing_key=o.routing_key,
        properties=o.properties,
        mandatory=True,
    )


async def publish_all(channel: Any, outs: Sequence[Message]) -> list[Any]:
    """Publish persistent ``mandatory`` messages at once; each one's confirm, or its error."""
    if len(outs) == 1:  # one enqueue: no gather (a task and a loop turn less)
        try:
            return [await _publish_one(channel, outs[0])]
        except asyncio.CancelledError as exc:  # the confirm's, as gather reports it; not ours
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return [exc]
        except Exception as exc:
            return [exc]
    return await asyncio.gather(*(_publish_one(channel, o) for o in outs), return_exceptions=True)
