"""The hooks: count every attempt's outcome, time it, and serve ``/metrics`` from workers.

Configure with ``[prometheus] port = 9464`` (``[tool.oddjob.prometheus]`` in
pyproject.toml, ``ODDJOB_PROMETHEUS__PORT``) or ``oddjob worker --metrics-port``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import click

from oddjob_core.config import backend_options
from oddjob_core.engine.executor import Executor
from oddjob_core.engine.runner import Attempted, Outcome
from oddjob_core.engine.runtime import Runtime
from oddjob_core.hookspecs import hookimpl

from .depth import QueueDepth, depth_of
from .metrics import JobMetrics
from .options import PrometheusOptions
from .server import exposition_registry, serve_metrics

log = logging.getLogger("oddjob.prometheus")
METRICS = JobMetrics()


class _Serving:
    """What this process serves: the port from the CLI, the depth collector, the server."""

    cli_port: int | None = None
    depth: QueueDepth | None = None
    registry: Any = None
    server: Any = None


def _stop_serving() -> None:
    if _Serving.server is not None:
        _Serving.server.shutdown()
        _Serving.server.server_close()
        _Serving.server = None
    if _Serving.depth is not None and _Serving.registry is not None:
        _Serving.registry.unregister(_Serving.depth)
    _Serving.depth = _Serving.registry = None


@hookimpl
def oddjob_worker_starting(runtime: Runtime, executor: Executor) -> None:
    """Learn which targets are trusted (label bound) and serve ``/metrics`` if configured."""
    METRICS.trusts = runtime.targets.is_trusted_name
    METRICS.watch(executor.in_flight_by_queue)
    options: PrometheusOptions = backend_options(runtime.settings, "prometheus", PrometheusOptions)
    port = _Serving.cli_port if _Serving.cli_port is not None else options.port
    if port is None:
        return
    _stop_serving()  # a second worker in one process replaces the first one's endpoint
    storage = runtime.storage
    depth = depth_of(storage, options.depth_cache_seconds)
    registry = exposition_registry(depth)
    _Serving.depth, _Serving.registry = depth, registry
    try:
        _Serving.server = serve_metrics(port, options.addr, registry)
    except OSError as exc:
        log.error(
            "cannot serve Prometheus metrics on %s:%d (%s); jobs still run. Give each worker "
            "process its own port (oddjob worker --metrics-port N), or use multiprocess mode "
            "(PROMETHEUS_MULTIPROC_DIR, see the oddjob-prometheus README)",
            options.addr,
            port,
            exc,
        )


@hookimpl
def oddjob_attempts_recorded(attempts: Sequence[Attempted], outcomes: Sequence[Outcome]) -> None:
    """Count outcomes, and observe durations and start lags: once per recorded batch."""
    METRICS.record(attempts, outcomes)


@hookimpl
def oddjob_queue_saturated(queue: str, pending: int, workers: int) -> None:
    METRICS.sink.saturation(queue)


@hookimpl
def oddjob_cli(group: click.Group) -> None:
    """``oddjob worker --metrics-port N`` and ``oddjob prometheus serve``."""
    from .cli import add_metrics_port, prometheus_group

    worker = group.commands.get("worker")
    if worker is not None:
        add_metrics_port(worker, _set_cli_port)
    group.add_command(prometheus_group)


def _set_cli_port(port: int | None) -> None:
    _Serving.cli_port = port
