"""The hooks: inject the trace context at enqueue, run each attempt in a span linked to it.

The tracer provider is looked up on every use, so whatever provider the
application installs (even after import) is the one used; while none is
installed (only the API), the hooks do nothing at all, and a worker that starts
without one unregisters the plugin (configure the SDK before the worker starts,
e.g. in a module listed in ``imports``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, NoOpTracerProvider, ProxyTracerProvider, SpanKind

from oddjob_core.engine.context import JobContext
from oddjob_core.engine.executor import Executor
from oddjob_core.engine.runtime import Runtime
from oddjob_core.hookspecs import hookimpl
from oddjob_core.model import Envelope

from .spans import TRACER_NAME, process_attributes, send_attributes

log = logging.getLogger("oddjob.otel")


def _tracer() -> trace.Tracer | None:
    """The tracer to use, or None while no SDK is installed (spans would be no-ops anyway)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
        return None
    return provider.get_tracer(TRACER_NAME)


@hookimpl
def oddjob_worker_starting(runtime: Runtime, executor: Executor) -> bool | None:
    """With no SDK configured when a worker starts, leave its hot path: nothing to trace."""
    if _tracer() is None:
        log.info("no OpenTelemetry SDK configured: oddjob-otel traces nothing in this worker")
        return False
    return None


@hookimpl
def oddjob_job_headers(job: Envelope) -> dict[str, str] | None:
    """Record a ``send <queue>`` span under the caller's current span; store its context."""
    tracer = _tracer()
    if tracer is None:
        return None
    with tracer.start_as_current_span(
        f"send {job.queue}", kind=SpanKind.PRODUCER, attributes=send_attributes(job)
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    return carrier or None


@hookimpl(wrapper=True)
def oddjob_run_job(context: JobContext, call: Callable[[], Any]) -> Generator[None, Any, Any]:
    """Run the attempt inside a ``process <queue>`` span: child of and linked to the send span.

    An exception from the job is recorded on the span (status ERROR) and re-raised.
    """
    tracer = _tracer()
    if tracer is None:
        return (yield)
    job = context.claim.job
    parent = propagate.extract(job.headers) if job.headers else None
    sent = trace.get_current_span(parent).get_span_context() if parent is not None else None
    links = [Link(sent)] if sent is not None and sent.is_valid else None
    with tracer.start_as_current_span(
        f"process {job.queue}",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=links,
        attributes=process_attributes(job, context.claim.recovered),
    ):
        return (yield)
