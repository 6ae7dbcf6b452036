"""Failed jobs: listed, requeued and purged by reading the failed queue and putting it back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Literal

import aiormq.exceptions as amqp_errors
import msgspec
from aiormq.abc import DeliveredMessage
from pamqp import commands as spec

from oddjob_core.clock import utcnow
from oddjob_core.errors import PayloadError, UnsupportedOperation
from oddjob_core.model import Envelope, JobQuery, JobRecord, JobState, Page

from .connection import Connection
from .declaring import Topologies
from .messages import FAILED_REASON, Messages, Out, failed_at
from .poison import corrupt_record
from .publishing import Publisher
from .schedule import ScheduleTracker

Action = Literal["keep", "drop", "requeue"]
Visit = Callable[[DeliveredMessage, Envelope | None, datetime], Action]


class FailedJobs:
    """The failed queues of one storage: list, search, requeue, purge."""

    def __init__(
        self,
        connection: Connection,
        topologies: Topologies,
        publisher: Publisher,
        messages: Messages,
        schedule: ScheduleTracker,
    ) -> None:
        self.connection = connection
        self.topologies = topologies
        self.publisher = publisher
        self.messages = messages
        self.schedule = schedule

    def of_queue(self, queue: str) -> list[JobRecord]:
        """The failed jobs of ``queue``, newest first (the failed queue is read and put back)."""
        records: list[JobRecord] = []

        def visit(message: DeliveredMessage, env: Envelope | None, at: datetime) -> Action:
            if env is not None:
                records.append(
                    JobRecord(envelope=env, state=JobState.FAILED, updated_at=at, finished_at=at)
                )
            else:  # a corrupt message: listed too (it is counted as failed)
                props = message.header.properties
                records.append(corrupt_record(queue, props.message_id, message.body,
                                              props.headers, FAILED_REASON, at))  # fmt: skip
            return "keep"

        self.connection.call(self._scan(queue, visit))
        records.sort(key=lambda r: r.envelope.id, reverse=True)
        return records

    def search(self, query: JobQuery) -> Page:
        """Failed jobs matching ``query`` (waiting ones cannot be read without consuming them)."""
        if query.states is not None and JobState.FAILED not in query.states:
            raise UnsupportedOperation(
                "storage 'rabbitmq' can only list failed jobs (it reads the failed queue); "
                "waiting jobs are messages in a queue, which cannot be searched; use counts()"
            )
        queues = [query.queue] if query.queue is not None else sorted(self.topologies.known)
        records: list[JobRecord] = []
        for q in queues:
            records.extend(self.of_queue(q))
        return Page.of(records, query)

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        """Move a failed job back to its work queue (or the ladder) with a fresh retry budget.

        Looks in the failed queues of the queues this process knows (used, or
        listed in the ``queues`` option).
        """
        wanted = str(job_id)

        def visit(message: DeliveredMessage, env: Envelope | None, at: datetime) -> Action:
            return "requeue" if env is not None and str(env.id) == wanted else "keep"

        def fresh(env: Envelope, now: datetime) -> Envelope:
            return msgspec.structs.replace(env, attempts=0, run_at=run_at or now)

        for q in sorted(self.topologies.known):
            if self.connection.call(self._scan(q, visit, fresh)):
                return True
        return False

    def purge(self, older_than: datetime | None, queue: str | None) -> int:
        """Delete the failed jobs of ``queue`` (default: every known queue) failed before ``older_than``."""
        queues = [queue] if queue is not None else sorted(self.topologies.known)
        total = 0
        for q in queues:
            if older_than is None:
                total += self.connection.call(self._purge_all(q))
                continue
            cutoff = older_than

            def visit(
                message: DeliveredMessage,
                env: Envelope | None,
                at: datetime,
                cutoff: datetime = cutoff,
            ) -> Action:
                return "drop" if at < cutoff else "keep"

            total += self.connection.call(self._scan(q, visit))
        return total

    async def _purge_all(self, queue: str) -> int:
        t = await self.topologies.ensure(queue, ladder=False)
        return await self.topologies.purge([t.failed.name])

    async def _scan(
        self,
        queue: str,
        visit: Visit,
        republish: Callable[[Envelope, datetime], Envelope] | None = None,
    ) -> int:
        """Read every message of the failed queue of ``queue`` once, then put back what is kept.

        ``visit`` returns ``"keep"``, ``"drop"`` (ack: deleted) or ``"requeue"``
        (published again to the work queue via ``republish``, confirmed, then
        acked). Messages are fetched with basic.get and returned by closing the
        channel, so a concurrent reader never loses one.
        """
        if republish is not None:
            t = await self.topologies.ensure(queue, ladder=True)
        else:
            t = self.topologies.of(queue)  # reading never creates queues
        channel = await self.connection.channel()
        raw = await channel.get_underlay_channel()
        acted = 0
        try:
            try:
                await raw.queue_declare(t.failed.name, passive=True)
            except amqp_errors.ChannelNotFoundEntity:
                return 0  # never declared: no failed jobs
            seen: set[int] = set()
            last_tag = 0
            to_ack: list[int] = []
            outs: list[Out] = []
            while True:
                message = await raw.basic_get(t.failed.name, no_ack=False)
                if not isinstance(message.delivery, spec.Basic.GetOk):
                    break
                props = message.header.properties
                headers = props.headers or {}
                at = failed_at(headers, props.timestamp)
                try:
                    env: Envelope | None = self.messages.codec.decode(
                        message.body, props.content_type
                    )
                except PayloadError:
                    env = None
                key = hash((props.message_id, message.body))
                if key in seen and message.redelivered:
                    break  # wrapped around (another reader returned messages meanwhile)
                seen.add(key)
                last_tag = message.delivery_tag or 0
                action = visit(message, env, at)
                if action == "drop":
                    to_ack.append(last_tag)
                elif action == "requeue" and env is not None and republish is not None:
                    again = republish(env, utcnow())
                    outs.append(self.messages.job(t, again, utcnow()))
                    to_ack.append(last_tag)
                    self.schedule.remember(again, utcnow())
            if outs:
                await self.publisher.publish(outs)
            for tag in to_ack:
                await raw.basic_ack(tag)
            acted = len(to_ack)
            kept = len(seen) - acted
            if kept:
                # put the rest back explicitly and wait until the queue counts them again,
                # so a count right after a listing sees every failed job
                await raw.basic_nack(last_tag, multiple=True, requeue=True)
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline:
                    ok = await raw.queue_declare(t.failed.name, passive=True)
                    if int(ok.message_count or 0) >= kept:
                        break
                    await asyncio.sleep(0.01)
        finally:
            if not channel.is_closed:
                await channel.close()
        return acted
