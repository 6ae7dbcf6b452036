"""CLI additions: ``--metrics-port`` on ``oddjob worker``, and ``oddjob prometheus serve``."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import click

from oddjob_core.cli import current_app
from oddjob_core.config import backend_options

from .depth import depth_of
from .options import PrometheusOptions
from .server import exposition_registry, serve_metrics


def add_metrics_port(worker: click.Command, remember: Callable[[int | None], None]) -> None:
    """Give ``oddjob worker`` a ``--metrics-port`` option (once, however often the CLI is built)."""
    if any(param.name == "metrics_port" for param in worker.params):
        return
    worker.params.append(
        click.Option(
            ["--metrics-port"],
            type=click.IntRange(0, 65535),
            help="Serve Prometheus metrics on this port (oddjob-prometheus; overrides [prometheus] port).",
        )
    )
    inner = worker.callback
    assert inner is not None

    @functools.wraps(inner)
    def callback(*args: Any, metrics_port: int | None = None, **kwargs: Any) -> Any:
        remember(metrics_port)
        return inner(*args, **kwargs)

    worker.callback = callback


@click.group("prometheus")
def prometheus_group() -> None:
    """Prometheus metrics (oddjob-prometheus)."""


@prometheus_group.command("serve")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port (default: [prometheus] port, else 9464)."
)
@click.option("--addr", help="Address to bind (default: [prometheus] addr, 127.0.0.1).")
def serve_command(port: int | None, addr: str | None) -> None:
    """Serve /metrics for this host's workers (multiprocess mode) plus queue depth, until stopped."""
    app = current_app()
    options: PrometheusOptions = backend_options(app.settings, "prometheus", PrometheusOptions)
    storage = app.storage
    depth = depth_of(storage, options.depth_cache_seconds)
    server = serve_metrics(
        port if port is not None else options.port or 9464,
        addr or options.addr,
        exposition_registry(depth),
    )
    click.echo(
        f"serving http://{addr or options.addr}:{server.server_port}/metrics (Ctrl-C stops)",
        err=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
