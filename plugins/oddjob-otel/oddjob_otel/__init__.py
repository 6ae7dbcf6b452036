"""OpenTelemetry tracing for oddjob jobs (``pip install oddjob-otel``)."""

from __future__ import annotations

from .spans import ATTEMPT, MESSAGING_SYSTEM, TRACER_NAME

__all__ = ["ATTEMPT", "MESSAGING_SYSTEM", "TRACER_NAME"]
