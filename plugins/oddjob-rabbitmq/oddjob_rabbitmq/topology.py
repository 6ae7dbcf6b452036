"""The broker objects of one oddjob queue, as plain data: names, arguments, bindings.

Per oddjob queue ``q`` (with prefix ``p``):

- ``p + q``: the work queue workers consume (quorum by default);
- ``p + q + ".failed"``: jobs that exhausted their retries, were refused, or
  could not be decoded;
- the **delay ladder**: for each level ``n`` in ``0 .. levels-1`` a topic
  exchange and a queue, both named ``p + q + ".delay.NN"``. Queue ``n`` holds
  every message exactly ``2**n`` seconds (``x-message-ttl``: one TTL per queue,
  so messages expire in arrival order, at the head) and then dead-letters it to
  exchange ``n-1`` (level 0: straight to the work queue).

A delayed message is published to the top exchange with a routing key made of
the bits of its delay in seconds, most significant first (``"0.0.….1.0.1"``).
Exchange ``n`` looks at bit ``n``: set, the message waits in queue ``n``;
clear, it passes at once to exchange ``n-1``. The delays of the set bits add
up to the requested delay (NServiceBus' and Celery's design for brokers
without the delayed-message plugin). Everything is durable: a job due in three
months sits in the broker, not in a worker's memory.

``Topology`` is data so the same description drives the declarations and the
broker-free unit tests that route delays through a model of topic matching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: deliveries a failed job survives (each listing counts one): effectively unlimited
FAILED_DELIVERY_LIMIT = 1_000_000_000

#: AMQP short strings: queue and exchange names are at most 255 bytes
MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class QueueSpec:
    """A queue to declare: name and ``x-`` arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Binding:
    """``source`` exchange routes keys matching ``pattern`` to queue or exchange ``destination``."""

    source: str
    destination: str
    pattern: str
    to_exchange: bool


@dataclass(frozen=True)
class Topology:
    """Everything one oddjob queue needs on the broker."""

    queue: str  # the oddjob queue name
    work: QueueSpec
    failed: QueueSpec
    delay_queues: tuple[QueueSpec, ...]  # index = level
    exchanges: tuple[str, ...]  # index = level (topic exchanges)
    bindings: tuple[Binding, ...]
    levels: int

    @property
    def entry_exchange(self) -> str:
        """Where delayed messages are published: the top level's exchange."""
        return self.exchanges[-1]

    @property
    def max_delay(self) -> int:
        """The longest delay one trip through the ladder gives, in seconds."""
        return int(2**self.levels - 1)


def check_queue_name(queue: str, prefix: str) -> None:
    """Refuse oddjob queue names RabbitMQ cannot hold (after the prefix and suffixes)."""
    longest = f"{prefix}{queue}.delay.00"
    if not queue or len(longest.encode()) > MAX_NAME_BYTES:
        raise ValueError(
            f"queue name {queue!r} with prefix {prefix!r} does not fit RabbitMQ's "
            f"{MAX_NAME_BYTES}-byte name limit (oddjob adds up to 9 bytes); use a shorter name"
        )
    if f"{prefix}{queue}".startswith("amq."):
        raise ValueError(
            f"queue name {queue!r}: names starting with 'amq.' are reserved by RabbitMQ"
        )


def routing_key(delay: int, levels: int) -> str:
    """The bits of ``delay`` seconds, most significant (level ``levels-1``) first, dot-separated."""
    if not 0 <= delay < 2**levels:
        raise ValueError(f"delay {delay} s is outside the ladder's 0..{2**levels - 1} s")
    return ".".join(format(delay, f"0{levels}b"))


def delay_seconds(remaining: float, levels: int) -> int:
    """Whole seconds to wait for ``remaining`` seconds: rounded up (never early), capped at one trip."""
    if remaining <= 0:
        return 0
    return min(math.ceil(remaining), int(2**levels) - 1)


def _pattern(level: int, bit: str, levels: int) -> str:
    words = ["*"] * levels
    words[levels - 1 - level] = bit
    return ".".join(words)


def build(
    queue: str,
    *,
    prefix: str,
    levels: int,
    queue_type: str,
    delay_queue_type: str,
    delivery_limit: int,
    consumer_timeout_ms: int | None = None,
) -> Topology:
    """Describe the work queue, failed queue and delay ladder of oddjob queue ``queue``."""
    check_queue_name(queue, prefix)
    base = f"{prefix}{queue}"
    work_name, failed_name = base, f"{base}.failed"

    def typed(kind: str) -> dict[str, Any]:
        if kind == "quorum":
            return {"x-queue-type": "quorum"}
        return {"x-queue-type": "classic"}

    work_args = typed(queue_type)
    if queue_type == "quorum":
        # a job whose worker dies on every delivery ends in the failed queue
        work_args |= {
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": failed_name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    if consumer_timeout_ms is not None:
        work_args["x-consumer-timeout"] = consumer_timeout_ms

    failed_args = typed(queue_type)
    if queue_type == "quorum":
        # listing failed jobs reads and returns them, which counts as a delivery; RabbitMQ 4
        # drops quorum messages after 20 by default, so lift the limit for this queue
        failed_args["x-delivery-limit"] = FAILED_DELIVERY_LIMIT

    exchanges = tuple(f"{base}.delay.{n:02d}" for n in range(levels))
    delay_queues: list[QueueSpec] = []
    bindings: list[Binding] = []
    for n in range(levels):
        args = typed(delay_queue_type) | {"x-message-ttl": 1000 * 2**n}
        if n == 0:
            args |= {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": work_name}
        else:
            args |= {"x-dead-letter-exchange": exchanges[n - 1]}
        if delay_queue_type == "quorum":
            # no message lost between two levels, even if a node fails mid-move
            args |= {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        delay_queues.append(QueueSpec(exchanges[n], args))
        bindings.append(Binding(exchanges[n], exchanges[n], _pattern(n, "1", levels), False))
        if n == 0:
            bindings.append(Binding(exchanges[0], work_name, _pattern(0, "0", levels), False))
        else:
            bindings.append(Binding(exchanges[n], exchanges[n - 1], _pattern(n, "0", levels), True))
    return Topology(
        queue=queue,
        work=QueueSpec(work_name, work_args),
        failed=QueueSpec(failed_name, failed_args),
        delay_queues=tuple(delay_queues),
        exchanges=exchanges,
        bindings=tuple(bindings),
        levels=levels,
    )
