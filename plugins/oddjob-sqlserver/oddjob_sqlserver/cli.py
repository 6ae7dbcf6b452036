"""``oddjob sqlserver ...``: schema migrations from the shell.

Self-contained click group: options come from the oddjob configuration when
run under the ``oddjob`` CLI (``[tool.oddjob.sqlserver]``,
``ODDJOB_SQLSERVER__CONNECTION_STRING``...), and the command-line flags
override them. ``migrate --print`` never connects.
"""

from __future__ import annotations

import click

from oddjob_core.cli import backend_options_for_cli
from oddjob_core.errors import OddjobError

from .database import Database
from .migrations import LATEST, MIGRATIONS, script
from .names import Names
from .options import SqlServerOptions
from .schema import applied_version, migrate


def _options(
    ctx: click.Context,
    connection_string: str | None,
    schema: str | None,
    table_prefix: str | None,
    retry_timeout: float | None = None,
) -> SqlServerOptions:
    """The configured sqlserver options (if any) with the command-line overrides applied."""
    return backend_options_for_cli(
        ctx,
        "sqlserver",
        SqlServerOptions,
        connection_string=connection_string,
        schema=schema,
        table_prefix=table_prefix,
        retry_timeout=retry_timeout,
    )


@click.group("sqlserver")
def sqlserver_group() -> None:
    """SQL Server storage: schema migrations and status."""


_connection_option = click.option(
    "--connection-string",
    envvar="ODDJOB_SQLSERVER__CONNECTION_STRING",
    show_envvar=True,
    help="ODBC connection string (default: the configured sqlserver options).",
)
_schema_option = click.option(
    "--schema", help="Schema holding oddjob's tables (default: the configured one, 'oddjob')."
)
_prefix_option = click.option(
    "--table-prefix", help="Prefix of oddjob's table names (default: the configured one, none)."
)
_retry_option = click.option(
    "--retry-timeout",
    type=click.FloatRange(0),
    help="Seconds to keep retrying an unreachable server (default: the configured one, 15).",
)


@sqlserver_group.command("migrate")
@_connection_option
@_schema_option
@_prefix_option
@_retry_option
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the T-SQL script of every migration (for sqlcmd) and exit, without connecting.",
)
@click.pass_context
def migrate_command(
    ctx: click.Context,
    connection_string: str | None,
    schema: str | None,
    table_prefix: str | None,
    retry_timeout: float | None,
    print_only: bool,
) -> None:
    """Create or upgrade oddjob's tables (safe to run concurrently and repeatedly)."""
    options = _options(ctx, connection_string, schema, table_prefix, retry_timeout)
    names = Names(options.schema, options.table_prefix)
    if print_only:
        click.echo(script(names), nl=False)
        return
    db = Database(options)
    try:
        applied = db.run(
            f"migrating {names.label()}",
            lambda cur, _: migrate(cur, names, target=db.target),
            atomic=True,
        )
        version = db.run("reading the schema version", lambda cur, _: applied_version(cur, names))
    except OddjobError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.close()
    for m in applied:
        click.echo(f"applied migration {m.version}: {m.name}")
    click.echo(
        f"{names.label()} on {db.target} is at migration {version} "
        f"(latest {LATEST}); {len(applied)} applied now"
    )


@sqlserver_group.command("status")
@_connection_option
@_schema_option
@_prefix_option
@_retry_option
@click.pass_context
def status_command(
    ctx: click.Context,
    connection_string: str | None,
    schema: str | None,
    table_prefix: str | None,
    retry_timeout: float | None,
) -> None:
    """Show which migrations the schema has; exit 1 when some are pending."""
    options = _options(ctx, connection_string, schema, table_prefix, retry_timeout)
    names = Names(options.schema, options.table_prefix)
    db = Database(options)
    try:
        version = db.run("reading the schema version", lambda cur, _: applied_version(cur, names))
    except OddjobError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.close()
    pending = [m for m in MIGRATIONS if m.version > version]
    click.echo(f"{names.label()} on {db.target} is at migration {version} (latest {LATEST})")
    for m in pending:
        click.echo(f"pending migration {m.version}: {m.name}")
    if pending:
        click.echo("run: oddjob sqlserver migrate")
        ctx.exit(1)
