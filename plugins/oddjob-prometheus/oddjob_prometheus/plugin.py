"""The hooks: count every attempt's outcome, time it, and serve ``/metrics`` from workers.

Configure with ``[prometheus] port = 9464`` (``[tool.oddjob.prometheus]`` in
pyproject.toml, ``ODDJOB_PROMETHEUS__PORT``) or ``oddjob worker --metrics-port``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from datetime import datetime
from typing import Any

import click

from oddjob_core.config import backend_options
from oddjob_core.engine.context import JobContext
from oddjob_core.engine.runtime import Runtime
from oddjob_core.errors import StorageError
from oddjob_core.hookspecs import hookimpl
from oddjob_core.model import AttemptError, Claim

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
def oddjob_worker_starting(runtime: Runtime) -> None:
    """Learn which targets are trusted (label bound) and serve ``/metrics`` if configured."""
    METRICS.trusts = runtime.targets.is_trusted_name
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


@hookimpl(wrapper=True)
def oddjob_run_job(context: JobContext, call: Callable[[], Any]) -> Generator[None, Any, Any]:
    """Time the attempt, observe its start lag, and count it in flight while it runs."""
    job = context.claim.job
    sink = METRICS.sink
    sink.started(job.queue, max(0.0, time.time() - job.run_at.timestamp()))
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        sink.ended(job.queue, time.perf_counter() - started)


@hookimpl
def oddjob_job_succeeded(claim: Claim, result: Any, duration: float) -> None:
    METRICS.count(claim.job.queue, claim.job.target, "succeeded")


@hookimpl
def oddjob_job_retrying(claim: Claim, error: AttemptError, run_at: datetime) -> None:
    METRICS.count(claim.job.queue, claim.job.target, "retrying")


@hookimpl
def oddjob_job_failed(claim: Claim, error: AttemptError) -> None:
    METRICS.count(claim.job.queue, claim.job.target, "failed")


@hookimpl
def oddjob_job_target_missing(claim: Claim, error: AttemptError) -> None:
    METRICS.count(claim.job.queue, claim.job.target, "target_missing")


@hookimpl
def oddjob_job_lost(claim: Claim, error: StorageError) -> None:
    METRICS.count(claim.job.queue, claim.job.target, "lease_lost")


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
