"""Turning buffered deliveries into claims, and the deliveries claimed but not settled yet.

A claim's token is ``<consumer generation>.<delivery tag>``: a delivery whose
channel died is redelivered by the broker, and the old claim is stale
(``LeaseLost``). Corrupt and poison messages go to the failed queue and early
ones back into the delay ladder, each acked only after its publish is confirmed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import msgspec
from aiormq.abc import DeliveredMessage

from oddjob_core.clock import utcnow
from oddjob_core.errors import LeaseLost, PayloadError, StorageError
from oddjob_core.model import AttemptError, Claim, Envelope
from oddjob_core.poison import check_route

from .acks import Channel
from .consuming import Consumer, Consumers, Delivery
from .messages import Messages, Out, deliveries, failed_copy
from .publishing import Publisher

log = logging.getLogger("oddjob.rabbitmq")

#: seconds without a new delivery after which a claim stops collecting
SETTLE = 0.03


@dataclass
class Held:
    """A claimed delivery not settled yet: the consumer and generation it came from."""

    consumer: Consumer
    generation: int
    message: DeliveredMessage

    def ack_of(self) -> tuple[Channel, int]:
        """The channel and delivery tag that acknowledge it."""
        tag = self.message.delivery_tag
        if tag is None:
            raise StorageError("a delivery without a delivery tag cannot be acknowledged")
        return self.message.channel, tag


class Claiming:
    """Hands out buffered deliveries as claims and keeps the ones not settled yet."""

    def __init__(self, consumers: Consumers, publisher: Publisher, messages: Messages) -> None:
        self.consumers = consumers  # and through them the connection, topologies and acks
        self.publisher = publisher
        self.messages = messages
        self.held: dict[str, Held] = {}

    def pop(self, claim: Claim) -> Held:
        """The claim's delivery, no longer held; ``LeaseLost`` if it is not this claim's now."""
        entry = self.held.pop(claim.token, None)
        if entry is None:
            raise LeaseLost(
                f"job {claim.job.id}: this claim already recorded an outcome or was given back"
            )
        if entry.message.channel.is_closed:
            raise LeaseLost(
                f"job {claim.job.id}: {entry.consumer.closed_reason or 'its channel closed'}; "
                "RabbitMQ delivers the job again"
            )
        return entry

    def lost(self, claim: Claim) -> bool:
        """True when the claim's delivery is gone (settled, or its channel died)."""
        entry = self.held.get(claim.token)
        return entry is None or entry.message.channel.is_closed

    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        """Hand out up to ``limit`` buffered deliveries (no broker round trip when some wait).

        With an empty buffer it waits a few milliseconds for the next delivery;
        when none comes (or the consumer started just now) it asks the broker how
        many jobs are ready and waits for them (``_collect``).
        """
        if limit <= 0:
            return []
        consumer, fresh = self.consumers.open(queue, limit)
        warm = min(consumer.initial_ready, consumer.prefetch)
        if consumer.received < warm:
            # just started: the broker is still pushing what was ready then; wait for it,
            # so claims see every job that was ready, not just those that beat the reply
            deadline = consumer.started_at + self.consumers.options.claim_wait
            while consumer.received < warm and time.monotonic() < deadline:
                self.consumers.wait(max(0.0, deadline - time.monotonic()))
        taken = consumer.take(limit)
        if not taken and consumer.cancelled_by_broker():
            self.consumers.connection.call(self.consumers.reconsume(consumer))
            return []
        if not taken and not fresh and self.consumers.wait_for_buffer([consumer], SETTLE):
            # the usual case while draining: the next delivery was on its way (an ack freed
            # the prefetch window); hand out what came, without a round trip
            taken = consumer.take(limit)
        elif (
            len(taken) < limit
            and (fresh or not taken)
            and not self._collect(consumer, limit, taken, fresh)
        ):
            return []
        return self._to_claims(consumer, taken, lease, owner)

    def _collect(self, consumer: Consumer, limit: int, taken: list[Delivery], fresh: bool) -> bool:
        """Wait for deliveries the broker reports ready, adding them to ``taken``; False: none.

        A consumer started just now waits up to ``claim_wait`` for the first
        delivery and collects until none arrives for a few milliseconds, so later
        claims see every job that was ready (not just those that beat the reply).
        Otherwise it asks the broker how many jobs are ready and waits for those
        only; a delivery arriving before the answer is handed out at once.
        """
        deadline = time.monotonic() + self.consumers.options.claim_wait
        want = limit - len(taken)
        if not fresh:
            ready = self.consumers.ready_while_waiting(consumer)
            if ready is None:  # a delivery came first
                taken += consumer.take(want)
                return True
            want = min(want, ready)
        if not taken and not self.consumers.wait_for_buffer(
            [consumer], self.consumers.options.claim_wait if want else 0.0
        ):
            return False
        while (fresh or len(consumer.buffer) < want) and time.monotonic() < deadline:
            if not self.consumers.wait_for_buffer([consumer], SETTLE, len(consumer.buffer)):
                break  # nothing more arrived for a moment
        taken += consumer.take(limit - len(taken))
        return True

    def _to_claims(
        self, consumer: Consumer, taken: list[Delivery], lease: float, owner: str
    ) -> list[Claim]:
        if not taken:
            return []
        now = utcnow()
        expires = now + timedelta(seconds=lease)
        claims: list[Claim] = []
        rejects: list[tuple[DeliveredMessage, Envelope | None, str]] = []
        early: list[tuple[DeliveredMessage, Envelope]] = []
        held = self.held
        for generation, message in taken:
            if message.channel.is_closed:
                continue  # its channel died: the broker redelivers it
            props = message.header.properties
            try:
                env = self.messages.codec.decode(message.body, props.content_type)
                check_route(env, queue=consumer.queue, what=f"message {props.message_id}")
            except PayloadError as exc:  # CorruptJob: failed alone, body kept as it was
                rejects.append((message, None, str(exc)))
                continue
            if env.run_at > now:
                early.append((message, env))
                continue
            recovered = bool(message.redelivered)
            lost = 0
            if recovered:
                # quorum queues count deliveries that ended without an ack (worker died):
                # each was an attempt the body could not record
                lost = deliveries(message)
                if lost > env.retry.max_retries + self.consumers.options.lost_delivery_grace:
                    rejects.append(
                        (
                            message,
                            env,
                            f"the worker running this job stopped without recording an outcome "
                            f"{lost} time(s) (killed, crashed, out of memory, or its "
                            "channel timed out); not running it again",
                        )
                    )
                    continue
            token = f"{generation}.{message.delivery_tag}"
            held[token] = Held(consumer, generation, message)
            claims.append(
                Claim(
                    job=msgspec.structs.replace(env, attempts=env.attempts + 1 + lost),
                    token=token,
                    owner=owner,
                    lease_expires_at=expires,
                    recovered=recovered,
                    receipt=token,
                )
            )
        if rejects or early:
            try:
                self.consumers.connection.call(self._set_aside(consumer.queue, rejects, early))
            except Exception as exc:
                log.error(
                    "could not move %d undeliverable message(s) of queue '%s' aside: %s; "
                    "the broker delivers them again",
                    len(rejects) + len(early),
                    consumer.queue,
                    exc,
                )
        return claims

    async def _set_aside(
        self,
        queue: str,
        rejects: list[tuple[DeliveredMessage, Envelope | None, str]],
        early: list[tuple[DeliveredMessage, Envelope]],
    ) -> None:
        """Fail corrupt or poison messages and re-delay early ones; ack each after its confirm."""
        t = await self.consumers.topologies.ensure(queue, ladder=bool(early))
        now = utcnow()
        outs: list[Out] = []
        for message, env, reason in rejects:
            props = message.header.properties
            log.error("job message %s in queue '%s' failed: %s", props.message_id, queue, reason)
            if env is None:
                outs.append(
                    failed_copy(t, message.body, props.content_type, props.message_id, reason, now)
                )
            else:
                attempt = env.attempts + 1 + deliveries(message)
                error = AttemptError(
                    attempt=attempt,
                    type="oddjob_rabbitmq.WorkerLost",
                    message=reason,
                    at=now,
                )
                failed = msgspec.structs.replace(env, attempts=attempt, errors=(*env.errors, error))
                outs.append(self.messages.failed(t, failed, reason, now))
        for message, env in early:
            outs.append(self.messages.route(t, env, message.body, now))
        await self.publisher.publish(outs)
        for message, _, _ in rejects:
            await self.consumers.acks.ack(message.channel, message.delivery_tag)
        for message, _ in early:
            await self.consumers.acks.ack(message.channel, message.delivery_tag)
