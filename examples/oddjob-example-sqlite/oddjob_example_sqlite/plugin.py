"""Registers ``storage = "example-sqlite"`` and the ``oddjob example-sqlite info`` command.

This module is the entry point (``[project.entry-points.oddjob]``): oddjob
imports it at start-up and calls its ``@hookimpl`` functions. Keep the import
cheap and free of side effects; build connections in the factory, never here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from oddjob_core.backends import StorageBackend
from oddjob_core.hookspecs import hookimpl

from .options import SqliteOptions

if TYPE_CHECKING:
    import click

    from oddjob_core.storage import Storage

NAME = "example-sqlite"


def _factory(options: SqliteOptions | None) -> Storage:
    """Build the storage from already validated options (None when the table is absent)."""
    from .storage import SqliteStorage

    return SqliteStorage(options or SqliteOptions())


@hookimpl
def oddjob_storage_backends() -> Sequence[StorageBackend]:
    """Offer ``storage = "example-sqlite"``, configured by ``[tool.oddjob.example-sqlite]``."""
    return [
        StorageBackend(
            name=NAME,
            factory=_factory,
            description="example third-party backend: one SQLite file, several processes per host",
            options=SqliteOptions,
        )
    ]


@hookimpl
def oddjob_cli(group: click.Group) -> None:
    """Add ``oddjob example-sqlite info`` (imported lazily: click is only needed by the CLI)."""
    from .cli import example_sqlite_group

    group.add_command(example_sqlite_group)
