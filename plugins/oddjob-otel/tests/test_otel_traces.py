"""One trace from the enqueue through every attempt, across a real worker process and storage."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from oddjob_core import Oddjob
from oddjob_core.model import RetryPolicy
from oddjob_core.testing import targets
from oddjob_core.testing.workers import make_worker_env, settings_env

_EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_provider)  # once per process: the API refuses a second provider

# The worker process: an SDK with an in-memory exporter, a burst worker, then every span as JSON.
WORKER = textwrap.dedent(
    """
    import json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    from oddjob_core import Oddjob
    with Oddjob() as app:
        app.run_worker(burst=True, burst_wait=3, handle_signals=False)
    spans = [
        {
            "name": s.name,
            "kind": s.kind.name,
            "trace_id": s.context.trace_id,
            "span_id": s.context.span_id,
            "parent": s.parent.span_id if s.parent else None,
            "links": [link.context.span_id for link in s.links],
            "attributes": dict(s.attributes),
            "status": s.status.status_code.name,
            "events": [e.name for e in s.events],
        }
        for s in exporter.get_finished_spans()
    ]
    json.dump(spans, open(sys.argv[1], "w"))
    """
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def run_worker(settings: dict[str, Any], cwd: Path) -> list[dict[str, Any]]:
    """Drain the store in a separate worker process; return the spans it recorded."""
    script, out = cwd / "worker.py", cwd / "spans.json"
    script.write_text(WORKER)
    env = make_worker_env(settings_env(settings))
    done = subprocess.run(
        [sys.executable, str(script), str(out)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    spans: list[dict[str, Any]] = json.loads(out.read_text())
    return spans


def test_each_attempt_span_continues_the_enqueue_trace(
    backend_settings: dict[str, Any], exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    settings = {**backend_settings, "allowed_prefixes": ["oddjob_core.testing.targets"]}
    tracer = trace.get_tracer("test")
    fast = RetryPolicy(max_retries=2, min_wait=0.1, max_wait=0.1, jitter=0)
    with Oddjob(**settings) as app, tracer.start_as_current_span("web request") as request:
        ok = app.enqueue(targets.noop, 1)
        flaky = app.options(retry=fast).enqueue(targets.fail_times, "flaky", 1)
        coroutine = app.enqueue(targets.async_echo, "a", 5)
    request_ctx = request.get_span_context()
    sent = {
        span.attributes["messaging.message.id"]: span
        for span in exporter.get_finished_spans()
        if span.name == "send default"
    }
    assert set(sent) == {str(ok), str(flaky), str(coroutine)}
    for span in sent.values():
        assert span.kind is SpanKind.PRODUCER
        assert span.context.trace_id == request_ctx.trace_id  # the request's trace goes on
        assert span.parent is not None
        assert span.parent.span_id == request_ctx.span_id

    spans = run_worker(settings, tmp_path)
    attempts: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        if span["name"] == "process default":
            attempts.setdefault(span["attributes"]["messaging.message.id"], []).append(span)
    assert {k: len(v) for k, v in attempts.items()} == {
        str(ok): 1,
        str(flaky): 2,
        str(coroutine): 1,
    }
    for job_id, runs in attempts.items():
        send = sent[job_id]
        for span in runs:
            assert span["kind"] == "CONSUMER"
            assert span["trace_id"] == request_ctx.trace_id
            assert span["parent"] == send.context.span_id
            assert span["links"] == [send.context.span_id]
            assert span["attributes"]["messaging.system"] == "oddjob"
            assert span["attributes"]["messaging.destination.name"] == "default"
            assert span["attributes"]["messaging.operation.type"] == "process"
    first, second = sorted(
        attempts[str(flaky)], key=lambda s: s["attributes"]["messaging.oddjob.attempt"]
    )
    assert (first["attributes"]["messaging.oddjob.attempt"], first["status"]) == (1, "ERROR")
    assert "exception" in first["events"]
    assert (second["attributes"]["messaging.oddjob.attempt"], second["status"]) == (2, "UNSET")


def test_a_job_enqueued_outside_any_trace_still_gets_one(
    exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    with Oddjob(storage="memory") as app:
        job_id = app.enqueue(targets.noop, 1)
        stored = app.get(job_id).envelope
    (send,) = exporter.get_finished_spans()
    assert send.parent is None
    assert stored.headers["traceparent"].split("-")[2] == format(send.context.span_id, "016x")


def test_a_job_stored_without_headers_starts_a_new_trace(exporter: InMemorySpanExporter) -> None:
    from datetime import UTC, datetime

    import oddjob_otel.plugin as plugin

    from oddjob_core.engine.context import JobContext
    from oddjob_core.model import Claim
    from oddjob_core.testing.envelopes import make_envelope

    job = make_envelope()
    assert job.headers == {}
    claim = Claim(job=job, token="t", owner="w", lease_expires_at=datetime.now(UTC))
    gen = plugin.oddjob_run_job(JobContext(claim), lambda: None)
    next(gen)
    with pytest.raises(StopIteration):
        gen.send("result")
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert not span.links
    assert span.status.status_code is StatusCode.UNSET


# A fresh process: the API takes one provider per process, and this test needs none at first.
LATE_SDK = textwrap.dedent(
    """
    import json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from oddjob_core import Oddjob
    with Oddjob(storage="memory", allowed_prefixes=["oddjob_core.testing.targets"]) as app:
        from oddjob_core.testing import targets
        before = app.get(app.enqueue(targets.noop, 1)).envelope.headers
        trace.set_tracer_provider(TracerProvider())  # configured after oddjob's first enqueue
        after = app.get(app.enqueue(targets.noop, 2)).envelope.headers
    print(json.dumps([before, after]))
    """
)


def test_an_sdk_configured_after_the_first_enqueue_is_used() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LATE_SDK], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == {}  # no SDK: nothing stored, no headers key
    assert set(after) == {"traceparent"}
