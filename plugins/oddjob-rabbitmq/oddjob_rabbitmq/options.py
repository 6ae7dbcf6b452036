"""The ``[tool.oddjob.rabbitmq]`` options table, validated when the storage is built."""

from __future__ import annotations

from typing import Literal

import msgspec


class RabbitOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Options of ``storage = "rabbitmq"``.

    Put the password in ``ODDJOB_RABBITMQ__URL`` (environment) rather than in a
    config file; oddjob never prints it.
    """

    #: AMQP URL: ``amqp://user:password@host:5672/vhost`` (``amqps://`` for TLS)
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    #: prepended to every queue and exchange name oddjob declares
    prefix: str = "oddjob."
    #: ``quorum`` (replicated, delivery counts, poison-job protection) or ``classic``
    queue_type: Literal["quorum", "classic"] = "quorum"
    #: type of the delay-ladder queues; default: ``queue_type``
    delay_queue_type: Literal["quorum", "classic"] | None = None
    #: message body encoding of new jobs; workers read both
    encoding: Literal["json", "msgpack"] = "json"
    #: declare the topology on first use; turn off on brokers where the application
    #: user may not declare (run ``oddjob rabbitmq declare`` as an admin instead)
    declare: bool = True
    #: delay-ladder levels: level n holds messages 2**n seconds; the longest single
    #: hop through the ladder is 2**levels - 1 seconds (28 levels: about 8.5 years;
    #: a later run_at is reached by hopping again)
    delay_levels: int = 28
    #: unacked deliveries per consumer (basic.qos); 0 = twice the limit of the first
    #: claim (the threads engine asks for 3 x workers - 1, so about 6 x workers: room
    #: for the jobs claimed, those whose acks are on their way, and the next deliveries)
    prefetch: int = 0
    #: quorum work queues: after this many deliveries without an outcome (worker
    #: killed each time) the broker dead-letters the job to the failed queue
    delivery_limit: int = 20
    #: deliveries that ended without an outcome (worker killed, connection or broker
    #: lost) a job may have beyond its ``retry.max_retries`` before it is failed as a
    #: poison job instead of run again; the grace absorbs connection losses, which
    #: also return prefetched jobs that never started (quorum queues only)
    lost_delivery_grace: int = 2
    #: seconds a delivery may stay unacked (job run time) before the broker closes
    #: the channel; sets ``x-consumer-timeout`` on the work queue (RabbitMQ >= 3.12).
    #: None: the broker's ``consumer_timeout`` (30 minutes by default)
    consumer_timeout: float | None = None
    #: seconds to wait for the first connection
    connect_timeout: float = 10.0
    #: seconds an enqueue or outcome write waits for the broker (reconnects
    #: included) before raising StorageUnavailable
    publish_timeout: float = 30.0
    #: enqueues publish from the caller's thread over a small pool of blocking
    #: connections (the first opened at the third enqueue, all closed with the
    #: storage), skipping the hop to the storage's loop thread (same confirms and
    #: durability; plain ``amqp://`` only); false: every enqueue goes through the
    #: loop thread's connection (see docs/rabbitmq.md)
    caller_connections: bool = True
    #: seconds between reconnection attempts (doubling up to 30)
    reconnect_interval: float = 1.0
    #: seconds a claim on an empty buffer waits for deliveries the broker reports ready
    claim_wait: float = 0.5
    #: queues ``counts()`` and ``oddjob rabbitmq declare`` cover besides those used
    #: by this process (AMQP cannot list queues)
    queues: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        scheme = self.url.partition("://")[0].lower()
        if scheme not in ("amqp", "amqps"):
            raise ValueError(
                f"url must start with amqp:// or amqps:// (got {scheme or 'no scheme'}://...); "
                "e.g. amqp://guest:guest@127.0.0.1:5672/"
            )
        if not 1 <= self.delay_levels <= 32:
            raise ValueError(f"delay_levels must be between 1 and 32, got {self.delay_levels}")
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0 (0 = automatic), got {self.prefetch}")
        if self.delivery_limit < 1:
            raise ValueError(f"delivery_limit must be >= 1, got {self.delivery_limit}")
        if self.lost_delivery_grace < 0:
            raise ValueError(f"lost_delivery_grace must be >= 0, got {self.lost_delivery_grace}")
        if self.consumer_timeout is not None and self.consumer_timeout <= 0:
            raise ValueError(f"consumer_timeout must be > 0 seconds, got {self.consumer_timeout}")
        for name in ("connect_timeout", "publish_timeout", "reconnect_interval", "claim_wait"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
