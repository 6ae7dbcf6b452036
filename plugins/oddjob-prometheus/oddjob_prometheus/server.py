"""Serving ``/metrics``: one process, or many processes of one host in multiprocess mode.

With ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus-client's multiprocess mode),
every worker process writes its samples there and whoever serves (a worker
whose port is free, or ``oddjob prometheus serve``) exposes their sum.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.registry import Collector

log = logging.getLogger("oddjob.prometheus")


def exposition_registry(extra: Collector | None = None) -> CollectorRegistry:
    """The registry to serve: this process's metrics, or every process's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    if extra is not None:
        registry.register(extra)
    return registry


def serve_metrics(port: int, addr: str, registry: CollectorRegistry) -> Any:
    """Serve ``registry`` on ``addr:port`` from a daemon thread; return the HTTP server."""
    server, _thread = start_http_server(port, addr=addr, registry=registry)
    log.info("serving Prometheus metrics on http://%s:%d/metrics", addr, server.server_port)
    return server
