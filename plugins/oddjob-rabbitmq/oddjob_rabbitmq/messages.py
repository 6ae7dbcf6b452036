"""The AMQP messages oddjob publishes: a job on its way somewhere, and the headers it carries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiormq.abc import DeliveredMessage
from pamqp import commands as spec

from oddjob_core.clock import utcnow
from oddjob_core.model import Envelope

from . import topology as topo
from .codec import Codec

PERSISTENT = 2
FAILED_AT = "x-oddjob-failed-at"
FAILED_REASON = "x-oddjob-error"


@dataclass(frozen=True)
class Out:
    """One message to publish: where, what, and which job (for errors)."""

    exchange: str
    routing_key: str
    body: bytes
    properties: spec.Basic.Properties
    job_id: str
    target_queue: str  # the AMQP queue it should reach, for messages


class Messages:
    """Builds the messages of one storage: encoded with its codec, routed by its delay ladder."""

    def __init__(self, codec: Codec, levels: int) -> None:
        self.codec = codec
        self.levels = levels

    def properties(self, envelope: Envelope, headers: dict[str, Any] | None = None) -> Any:
        return spec.Basic.Properties(
            content_type=self.codec.content_type,
            delivery_mode=PERSISTENT,
            message_id=str(envelope.id),
            headers=headers,
        )

    def route(self, t: topo.Topology, envelope: Envelope, body: bytes, now: datetime) -> Out:
        """Publish to the work queue when due, else into the delay ladder."""
        seconds = topo.delay_seconds((envelope.run_at - now).total_seconds(), self.levels)
        props = self.properties(envelope)
        if seconds <= 0:
            return Out("", t.work.name, body, props, str(envelope.id), t.work.name)
        key = topo.routing_key(seconds, self.levels)
        return Out(t.entry_exchange, key, body, props, str(envelope.id), t.work.name)

    def job(self, t: topo.Topology, envelope: Envelope, now: datetime) -> Out:
        """``envelope`` encoded and routed (work queue or delay ladder)."""
        return self.route(t, envelope, self.codec.encode(envelope), now)

    def failed(self, t: topo.Topology, env: Envelope, reason: str, now: datetime) -> Out:
        """``env`` for the failed queue, stamped with when and why."""
        return failed_copy(
            t, self.codec.encode(env), self.codec.content_type, str(env.id), reason, now
        )


def failed_copy(
    t: topo.Topology,
    body: bytes,
    content_type: str | None,
    message_id: str | None,
    reason: str,
    now: datetime,
) -> Out:
    """A message body (decodable or not) for the failed queue, stamped with when and why."""
    return Out(
        "",
        t.failed.name,
        body,
        spec.Basic.Properties(
            content_type=content_type,
            delivery_mode=PERSISTENT,
            message_id=message_id,
            timestamp=now,
            headers={FAILED_AT: now.isoformat(), FAILED_REASON: reason[:1000]},
        ),
        str(message_id),
        t.failed.name,
    )


def unchanged(message: DeliveredMessage, amqp_queue: str) -> Out:
    """``message`` as it came, published again to ``amqp_queue`` (a job given back)."""
    props = message.header.properties
    return Out(
        "",
        amqp_queue,
        message.body,
        spec.Basic.Properties(
            content_type=props.content_type,
            delivery_mode=PERSISTENT,
            message_id=props.message_id,
        ),
        str(props.message_id),
        amqp_queue,
    )


def deliveries(message: DeliveredMessage) -> int:
    """Earlier deliveries of this message that ended without an ack (quorum queues count them)."""
    count = (message.header.properties.headers or {}).get("x-delivery-count", 0)
    return count if isinstance(count, int) else 0


def failed_at(headers: dict[str, Any], timestamp: datetime | None) -> datetime:
    """When a failed message failed: its header, else its timestamp, else now."""
    value = headers.get(FAILED_AT)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    if timestamp is not None:
        return timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
    return utcnow()
