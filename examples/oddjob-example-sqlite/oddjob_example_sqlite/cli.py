"""``oddjob example-sqlite ...``: commands a plugin adds through the ``oddjob_cli`` hook."""

from __future__ import annotations

import click

from oddjob_core.cli import current_app
from oddjob_core.config import backend_options
from oddjob_core.errors import OddjobError

from .options import SqliteOptions


@click.group("example-sqlite")
def example_sqlite_group() -> None:
    """Example SQLite storage: inspect the database file."""


@example_sqlite_group.command("info")
@click.pass_context
def info_command(ctx: click.Context) -> None:
    """Show the configured database file, its journal mode and jobs per queue and state."""
    from .storage import SqliteStorage

    try:
        settings = current_app(ctx).settings  # --config, environment and --storage applied
        options = backend_options(settings, "example-sqlite", SqliteOptions) or SqliteOptions()
        storage = SqliteStorage(options)
    except OddjobError as exc:
        raise click.ClickException(str(exc)) from exc
    with storage:
        click.echo(f"database: {storage.path.resolve()} (journal_mode={storage.journal_mode()})")
        for queue, per_state in sorted(storage.counts().items()):
            summary = ", ".join(f"{s}={n}" for s, n in sorted(per_state.items()))
            click.echo(f"{queue}: {summary}")
