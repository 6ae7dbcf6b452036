"""Span names and attributes, after the OpenTelemetry messaging semantic conventions.

A job is a message: enqueueing it is a ``send`` (PRODUCER) span, each attempt a
``process`` (CONSUMER) span whose parent and link are the send span, carried in
the job's headers as W3C trace context (``traceparent``/``tracestate``).
"""

from __future__ import annotations

from typing import Any

from oddjob_core.model import Envelope

TRACER_NAME = "oddjob"
MESSAGING_SYSTEM = "oddjob"
ATTEMPT = "messaging.oddjob.attempt"  # system-specific attribute: 1 for the first attempt


def send_attributes(job: Envelope) -> dict[str, Any]:
    """Attributes of the span that enqueues ``job``."""
    return {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": job.queue,
        "messaging.message.id": str(job.id),
        "messaging.oddjob.target": job.target,
    }


def process_attributes(job: Envelope, recovered: bool) -> dict[str, Any]:
    """Attributes of the span of one attempt of ``job``."""
    return {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": str(job.id),
        "messaging.oddjob.target": job.target,
        ATTEMPT: job.attempts,
        "messaging.oddjob.recovered": recovered,
    }
