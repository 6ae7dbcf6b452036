"""The hooks: inject the trace context at enqueue, run each attempt in a span linked to it.

The tracer provider is looked up on every use until one is installed, so
whatever provider the application installs (even after import) is the one used;
while none is installed (only the API), the hooks do nothing at all (one
attribute read per job), and a worker that starts
without one unregisters the plugin (configure the SDK before the worker starts,
e.g. in a module listed in ``imports``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER
from opentelemetry.trace import Link, NoOpTracerProvider, ProxyTracerProvider, SpanKind

from oddjob_core.engine.context import JobContext
from oddjob_core.engine.executor import Executor
from oddjob_core.engine.runtime import Runtime
from oddjob_core.hookspecs import hookimpl
from oddjob_core.model import Envelope

from .spans import TRACER_NAME, process_attributes, send_attributes

log = logging.getLogger("oddjob.otel")


class _Provider:
    """The tracer once an SDK provider is installed; cheap to ask while none is.

    The API installs one provider per process, for good: once a real one is seen
    its tracer is kept. Until then every job asks again (an application may
    configure the SDK after importing oddjob), but with one attribute read, not
    ``get_tracer_provider()``, whose ``os.environ`` lookup costs an enqueue
    about 1.5 us. ``OTEL_PYTHON_TRACER_PROVIDER`` (a provider named in the
    environment) is read once, at import.
    """

    tracer: trace.Tracer | None = None
    settled = False  # a provider that traces nothing (NoOp) was installed: for good
    from_environment = OTEL_PYTHON_TRACER_PROVIDER in os.environ


_NOT_THERE = object()


def _tracer() -> trace.Tracer | None:
    """The tracer to use, or None while no SDK is installed (spans would be no-ops anyway)."""
    tracer = _Provider.tracer
    if tracer is not None or _Provider.settled:
        return tracer
    # the API's global (None until a provider is set); a future API without it: ask the API
    if getattr(trace, "_TRACER_PROVIDER", _NOT_THERE) is None and not _Provider.from_environment:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider):
        return None
    if isinstance(provider, NoOpTracerProvider):
        _Provider.settled = True
        return None
    _Provider.tracer = provider.get_tracer(TRACER_NAME)
    return _Provider.tracer


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
