"""Registers ``storage = "postgres"`` and the ``oddjob postgres`` commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from oddjob_core.backends import StorageBackend
from oddjob_core.hookspecs import hookimpl

from .options import PostgresOptions

if TYPE_CHECKING:
    import click

    from oddjob_core.storage import Storage


def _factory(options: PostgresOptions | None) -> Storage:
    from .storage import PostgresStorage

    return PostgresStorage(options or PostgresOptions())


@hookimpl
def oddjob_storage_backends() -> Sequence[StorageBackend]:
    """Offer ``storage = "postgres"``."""
    return [
        StorageBackend(
            name="postgres",
            factory=_factory,
            description="PostgreSQL (psycopg 3): SKIP LOCKED claims, LISTEN/NOTIFY pickup, "
            "transactional enqueue",
            options=PostgresOptions,
        )
    ]


@hookimpl
def oddjob_cli(group: click.Group) -> None:
    """Add ``oddjob postgres migrate``."""
    from .cli import postgres_group

    group.add_command(postgres_group)
