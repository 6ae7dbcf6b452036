"""Registers ``storage = "rabbitmq"`` and the ``oddjob rabbitmq`` commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from oddjob_core.backends import StorageBackend
from oddjob_core.hookspecs import hookimpl

from .options import RabbitOptions

if TYPE_CHECKING:
    import click

    from oddjob_core.storage import Storage


def _factory(options: RabbitOptions | None) -> Storage:
    from .storage import RabbitStorage

    return RabbitStorage(options or RabbitOptions())


@hookimpl
def oddjob_storage_backends() -> Sequence[StorageBackend]:
    """Offer ``storage = "rabbitmq"``."""
    return [
        StorageBackend(
            name="rabbitmq",
            factory=_factory,
            description="RabbitMQ (aio-pika): one message per job, quorum queues, durable "
            "delay ladder, publisher confirms",
            options=RabbitOptions,
        )
    ]


@hookimpl
def oddjob_cli(group: click.Group) -> None:
    """Add ``oddjob rabbitmq declare|status|failed|purge``."""
    from .cli import rabbitmq_group

    group.add_command(rabbitmq_group)
