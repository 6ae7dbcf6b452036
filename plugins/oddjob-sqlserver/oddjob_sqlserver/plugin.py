"""Registers ``storage = "sqlserver"`` and the ``oddjob sqlserver`` commands."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from oddjob_core.backends import StorageBackend
from oddjob_core.hookspecs import hookimpl

from .options import SqlServerOptions

if TYPE_CHECKING:
    import click

    from oddjob_core.storage import Storage


def _factory(options: SqlServerOptions | None) -> Storage:
    from .storage import SqlServerStorage

    return SqlServerStorage(options or SqlServerOptions())


@hookimpl
def oddjob_storage_backends() -> Sequence[StorageBackend]:
    """Offer ``storage = "sqlserver"``."""
    return [
        StorageBackend(
            name="sqlserver",
            factory=_factory,
            description="Microsoft SQL Server (pyodbc): READPAST claims, fencing tokens, "
            "transactional enqueue",
            options=SqlServerOptions,
        )
    ]


@hookimpl
def oddjob_cli(group: click.Group) -> None:
    """Add ``oddjob sqlserver migrate|status``."""
    from .cli import sqlserver_group

    group.add_command(sqlserver_group)
