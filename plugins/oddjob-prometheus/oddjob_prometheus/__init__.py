"""Prometheus metrics for oddjob workers (``pip install oddjob-prometheus``)."""

from __future__ import annotations

from .metrics import JobMetrics
from .options import PrometheusOptions
from .server import serve_metrics

__all__ = ["JobMetrics", "PrometheusOptions", "serve_metrics"]
