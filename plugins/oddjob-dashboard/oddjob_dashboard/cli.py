"""``oddjob dashboard``: serve the dashboard with uvicorn, on loopback unless credentials are set."""

from __future__ import annotations

import threading

import click

from oddjob_core.cli import backend_options_for_cli, current_app

from .options import DashboardOptions
from .security import BindRefused, Credentials, check_bind


@click.command("dashboard")
@click.option("--host", help="Address to listen on (default 127.0.0.1; others need credentials).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port to listen on (default 8765).")
@click.option(
    "--read-only", "read_only", is_flag=True, default=None, help="Show jobs; change nothing."
)
@click.pass_context
def dashboard_command(
    ctx: click.Context, host: str | None, port: int | None, read_only: bool | None
) -> None:
    """See and fix jobs in a browser (options: [dashboard] table, ODDJOB_DASHBOARD__*)."""
    import uvicorn

    from .app import create_app

    options = backend_options_for_cli(
        ctx, "dashboard", DashboardOptions, host=host, port=port, read_only=read_only
    )
    credentials = Credentials(options.token, options.username, options.password)
    try:
        check_bind(options.host, credentials)
    except BindRefused as exc:
        raise click.ClickException(str(exc)) from exc
    app = current_app(ctx)
    app.storage  # noqa: B018 - a bad storage configuration fails here, not on the first page
    asgi = create_app(
        app,
        read_only=options.read_only,
        credentials=credentials if credentials else None,
        refresh=options.refresh,
    )
    threading.Thread(
        target=asgi.state.dashboard.warm, name="oddjob-dashboard-warm", daemon=True
    ).start()
    shown = f"[{options.host}]" if ":" in options.host else options.host
    click.echo(
        f"oddjob dashboard: http://{shown}:{options.port}/ (storage '{app.settings.storage}'"
        f"{', read-only' if options.read_only else ''}"
        f"{', authentication required' if credentials else ''}); Ctrl+C stops it",
        err=True,
    )
    uvicorn.run(asgi, host=options.host, port=options.port, log_level="warning", access_log=False)
