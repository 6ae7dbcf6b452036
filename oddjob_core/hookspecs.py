"""Every hook oddjob calls, in one place. Implement them with ``@oddjob_core.hookimpl``.

Lifecycle hooks (``oddjob_job_*``) are called after storage has recorded the
state change, so a hook never sees a state the store does not have. Hooks run
on the worker thread of the job: keep them quick, and never raise from them
(a raising hook is logged and the worker goes on).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .backends import ExecutionBackend, StorageBackend
    from .engine.context import JobContext
    from .engine.executor import Executor
    from .engine.runner import Attempted, Outcome
    from .engine.runtime import Runtime
    from .errors import StorageError
    from .model import AttemptError, Claim, Envelope

PROJECT = "oddjob"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def oddjob_storage_backends() -> Sequence[StorageBackend]:
    """Return the storage backends this plugin provides (called once at plugin load)."""
    raise NotImplementedError


@hookspec
def oddjob_execution_backends() -> Sequence[ExecutionBackend]:
    """Return the execution backends this plugin provides (called once at plugin load)."""
    raise NotImplementedError


@hookspec(firstresult=True)
def oddjob_resolve_instance(cls: type) -> object | None:
    """Return the instance whose method a job calls (dependency injection).

    Called for jobs whose target is a method (``module:Class.method``); the first
    non-None result wins. The built-in fallback calls ``cls()``.
    """
    raise NotImplementedError


@hookspec
def oddjob_job_headers(job: Envelope) -> dict[str, str] | None:
    """Return headers to store with a job being enqueued (or None for none).

    Called on the producer's thread (so the caller's context, e.g. its current
    trace, is visible) once per job, after its arguments were validated and
    before it is stored. Every plugin's headers are merged into
    ``Envelope.headers``; keep them small strings (a trace context, a tenant).
    """


@hookspec
def oddjob_job_enqueued(jobs: Sequence[Envelope]) -> None:
    """Called after ``add`` stored a batch of new jobs (one call per batch)."""


@hookspec
def oddjob_job_started(claim: Claim) -> None:
    """Called when a worker starts an attempt, before arguments are decoded."""


@hookspec
def oddjob_job_succeeded(claim: Claim, result: Any, duration: float) -> None:
    """Called after the store marked the job succeeded; ``duration`` in seconds.

    Executors that record successes in batches call it from their recording
    thread, not the thread that ran the job.
    """


@hookspec
def oddjob_job_retrying(claim: Claim, error: AttemptError, run_at: datetime) -> None:
    """Called after the store scheduled the next attempt at ``run_at``."""


@hookspec
def oddjob_job_failed(claim: Claim, error: AttemptError) -> None:
    """Called after the store marked the job failed for good (retries exhausted or refused)."""


@hookspec
def oddjob_job_target_missing(claim: Claim, error: AttemptError) -> None:
    """Called after the store failed a job whose target no longer exists in this worker."""


@hookspec
def oddjob_job_lost(claim: Claim, error: StorageError) -> None:
    """Called when an attempt ran but its outcome could not be recorded.

    ``error`` is ``LeaseLost`` (the lease expired and another worker owns the
    job now) or the ``StorageError`` that kept the write from landing. The job
    runs again after its lease expires (at-least-once delivery).
    """


@hookspec
def oddjob_attempts_recorded(attempts: Sequence[Attempted], outcomes: Sequence[Outcome]) -> None:
    """Called once per recording batch, after the outcomes were written and their hooks ran.

    ``attempts`` are the engine's outcome records (``Success``, ``Retrying``,
    ``Failure``, ``Lost``: each with its claim, ``duration`` and ``started_at``, a
    ``time.time()`` value, 0 when the job never started); ``outcomes[i]`` is what
    storage made of ``attempts[i]``. One call covers many jobs: the cheap seam
    for metrics, which would otherwise pay for several hook calls per job.
    """


@hookspec
def oddjob_worker_starting(runtime: Runtime, executor: Executor) -> bool | None:
    """Called when a worker is built for an app, before it claims any job.

    ``runtime`` gives the settings, storage and worker id, ``executor`` what runs
    the jobs (``in_flight_by_queue()``): plugins start their side services here
    (a metrics endpoint, say). Return False to be unregistered for the rest of
    the process, so a plugin with nothing to do (a tracer with no SDK
    configured) costs the worker's hot path nothing. Not called for producers.
    """


@hookspec
def oddjob_queue_saturated(queue: str, pending: int, workers: int) -> None:
    """Called when a coordinator stops claiming because pending work reached ``2 × workers``.

    ``pending`` counts the claimed jobs waiting for a worker (running ones not
    included): at least ``2 × workers``, at most ``3 × workers - 1`` (a claim made
    just below the threshold may overshoot it). Workers that cannot keep up with
    the queue cause it; more workers (threads or processes) are the remedy.
    """


@hookspec(firstresult=True)
def oddjob_run_job(context: JobContext, call: Callable[[], Any]) -> Any:
    """Run one attempt: the middleware seam for timeouts, tracing and metrics.

    The core's own implementation calls ``call()`` and returns its result.
    Implement it with ``@hookimpl(wrapper=True)`` and ``result = yield`` to wrap
    every job run; an exception raised by the job propagates through ``yield``.
    """
    raise NotImplementedError


@hookspec
def oddjob_cli(group: click.Group) -> None:
    """Add commands to the ``oddjob`` CLI (e.g. ``oddjob sqlserver migrate``)."""
