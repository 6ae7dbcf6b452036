"""``oddjob postgres ...``: schema migrations from the shell.

Self-contained: options come from the oddjob configuration when run under the
``oddjob`` CLI (``[tool.oddjob.postgres]``, ``ODDJOB_POSTGRES__DSN``...), and
``--dsn`` / ``--schema`` override them.
"""

from __future__ import annotations

import click
import psycopg

from oddjob_core.cli import backend_options_for_cli

from .database import describe, scrub
from .migrations import LATEST, MIGRATIONS, applied_version, migrate, script
from .options import PostgresOptions


def _options(ctx: click.Context, dsn: str | None, schema: str | None) -> PostgresOptions:
    """The configured postgres options (if any) with the command-line overrides applied."""
    return backend_options_for_cli(ctx, "postgres", PostgresOptions, dsn=dsn, schema=schema)


@click.group("postgres")
def postgres_group() -> None:
    """PostgreSQL storage: schema migrations and status."""


_dsn_option = click.option(
    "--dsn",
    envvar="ODDJOB_POSTGRES__DSN",
    show_envvar=True,
    help="libpq connection string or URL (default: the configured postgres dsn).",
)
_schema_option = click.option(
    "--schema", help="Schema holding oddjob's tables (default: the configured one, 'oddjob')."
)


@postgres_group.command("migrate")
@_dsn_option
@_schema_option
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the SQL of every migration and exit, without connecting.",
)
@click.pass_context
def migrate_command(
    ctx: click.Context, dsn: str | None, schema: str | None, print_only: bool
) -> None:
    """Create or upgrade oddjob's tables (safe to run concurrently and repeatedly)."""
    options = _options(ctx, dsn, schema)
    if print_only:
        click.echo(script(options.schema), nl=False)
        return
    target = describe(options.dsn)
    try:
        with psycopg.connect(
            options.dsn,
            autocommit=True,
            connect_timeout=10,
            application_name=options.application_name,
        ) as conn:
            applied = migrate(conn, options.schema)
            version = applied_version(conn, options.schema)
    except psycopg.Error as exc:
        raise click.ClickException(
            f"migrating schema '{options.schema}' on {target} failed: "
            f"{scrub(str(exc).strip(), options.dsn)}"
        ) from exc
    for m in applied:
        click.echo(f"applied migration {m.version}: {m.name}")
    click.echo(
        f"schema '{options.schema}' on {target} is at migration {version} "
        f"(latest {LATEST}); {len(applied)} applied now"
    )


@postgres_group.command("status")
@_dsn_option
@_schema_option
@click.pass_context
def status_command(ctx: click.Context, dsn: str | None, schema: str | None) -> None:
    """Show which migrations the schema has; exit 1 when some are pending."""
    options = _options(ctx, dsn, schema)
    target = describe(options.dsn)
    try:
        with psycopg.connect(options.dsn, autocommit=True, connect_timeout=10) as conn:
            version = applied_version(conn, options.schema)
    except psycopg.Error as exc:
        raise click.ClickException(
            f"reading schema '{options.schema}' on {target} failed: "
            f"{scrub(str(exc).strip(), options.dsn)}"
        ) from exc
    pending = [m for m in MIGRATIONS if m.version > version]
    click.echo(f"schema '{options.schema}' on {target} is at migration {version} (latest {LATEST})")
    for m in pending:
        click.echo(f"pending migration {m.version}: {m.name}")
    if pending:
        click.echo("run: oddjob postgres migrate")
        ctx.exit(1)
