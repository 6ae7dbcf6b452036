"""Run one claimed job, then record outcomes: two steps, so every executor writes the same way.

``JobRunner.attempt`` runs a job and returns what happened (an ``Attempted``:
``Success``, ``Retrying``, ``Failure`` — target missing included — or ``Lost``)
without writing anything. ``JobRunner.record`` is the one write path: it
writes a batch of outcomes (every success in one ``complete_many`` call, the
others one by one) and only then calls the lifecycle hooks, so a hook never
reports a state the store does not have. A write refused because the lease
was lost (``LeaseLost``) is logged and skipped: the newer owner's outcome
stands. Executors that cannot call the job in-line (an event loop, a child
process) use the pieces: ``prepare`` (resolve and decode), ``bind`` (the call),
``finish`` / ``failed`` (turn a result or an exception into an outcome).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from ..errors import LeaseLost, PayloadError, StorageError, TargetMissing, TargetNotAllowed
from ..model import AttemptError, Claim
from ..plugins import Hooks
from ..retrying import JobTimeout, attempt_error, next_run_at, should_retry
from ..storage import Storage
from ..targets import Target, TargetResolver
from .context import JobCancelled, JobContext, _current

log = logging.getLogger("oddjob.worker")
fencing = logging.getLogger("oddjob.fencing")  # refused outcomes: kept by ``worker -v``


class Outcome(enum.Enum):
    """What happened to one attempt, for counters and progress displays."""

    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    LOST = "lost"  # outcome not recorded: lease lost or storage down (the job will run again)


@dataclass(frozen=True, slots=True)
class Success:
    """An attempt that returned; its success is not recorded in storage yet."""

    claim: Claim
    result: Any  # what the job returned (passed to the job_succeeded hooks)
    stored: Any  # the result as msgspec builtins, kept with the job (None if not encodable)
    duration: float  # seconds the call took
    started_at: float = 0.0  # time.time() when the attempt began


@dataclass(frozen=True, slots=True)
class Retrying:
    """An attempt that failed and earned another one at ``run_at``; not recorded yet."""

    claim: Claim
    error: AttemptError
    run_at: datetime
    duration: float = 0.0  # seconds the call took
    started_at: float = 0.0  # time.time() when the attempt began


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that failed for good (``missing``: its target does not exist); not recorded yet."""

    claim: Claim
    error: AttemptError
    missing: bool = False
    duration: float = 0.0  # seconds the call took (0 if it never ran)
    started_at: float = 0.0  # time.time() when the attempt began (0 if it never did)


@dataclass(frozen=True, slots=True)
class Lost:
    """An attempt whose lease was lost: nothing is written, the newer owner's outcome stands."""

    claim: Claim
    reason: str
    duration: float = 0.0  # seconds the call took (0 if it never ran)
    started_at: float = 0.0  # time.time() when the attempt began (0 if it never did)


Attempted = Success | Retrying | Failure | Lost


@dataclass(frozen=True, slots=True)
class Prepared:
    """A claim whose target is resolved and whose arguments are decoded, ready to call."""

    target: Target
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class JobRunner:
    """Executes claims; one instance is shared by every worker of a process."""

    def __init__(self, storage: Storage, hooks: Hooks, targets: TargetResolver) -> None:
        self.storage = storage
        self.hooks = hooks
        self.targets = targets
        self._local = threading.local()

    def context_for(self, claim: Claim) -> JobContext:
        """A fresh context with the job's deadline set from its timeout."""
        timeout = claim.job.timeout
        return JobContext(
            claim,
            deadline=time.monotonic() + timeout if timeout else None,
            started_at=time.time(),
            started=time.perf_counter(),
        )

    def run(self, claim: Claim, context: JobContext | None = None) -> Outcome:
        """Run one attempt and record its outcome; never raises for a job's own failure."""
        return self.record([self.attempt(claim, context)])[0]

    def attempt(self, claim: Claim, context: JobContext | None = None) -> Attempted:
        """Run one attempt and return its outcome; nothing is written (see ``record``)."""
        ctx = context or self.context_for(claim)
        self.hooks.job_started(claim)
        prepared = self.prepare(claim)
        if not isinstance(prepared, Prepared):
            return prepared
        return self.call(prepared, ctx)

    # -- the pieces ------------------------------------------------------------

    def prepare(self, claim: Claim) -> Prepared | Failure:
        """Resolve the target and decode the arguments; a job that cannot run fails here."""
        try:
            target = self.targets.resolve(claim.job.target)
            args, kwargs = target.plan.decode(claim.job.arguments)
        except TargetMissing as exc:
            return Failure(claim, attempt_error(exc, claim.job.attempts), missing=True)
        except (TargetNotAllowed, PayloadError) as exc:
            return Failure(claim, attempt_error(exc, claim.job.attempts))
        return Prepared(target, args, kwargs)

    def call(self, prepared: Prepared, ctx: JobContext) -> Attempted:
        """Call a prepared job on this thread (through the ``run_job`` wrappers); return its outcome."""
        token = _current.set(ctx)
        started = time.perf_counter()
        try:
            call = self.bind(prepared, ctx)  # may raise: DI is user code too
            result = self.hooks.run_job(ctx, call)
        except Exception as exc:
            return self.failed(ctx, exc)
        finally:
            _current.reset(token)
            ctx.recording = True
        return self.finish(ctx, result, time.perf_counter() - started)

    def bind(
        self, prepared: Prepared, ctx: JobContext, *, run_async: bool = True
    ) -> Callable[[], Any]:
        """The call that runs the job (its instance resolved through the hook).

        An ``async def`` target runs to completion on this thread's event loop,
        bounded by the deadline; with ``run_async=False`` the call returns the
        coroutine instead, for an executor that awaits it on its own loop.
        """
        target, args, kwargs = prepared.target, prepared.args, prepared.kwargs
        function = target.function
        if target.owner is not None:
            instance = self.hooks.resolve_instance(target.owner)
            function = getattr(instance, function.__name__)
        if not target.is_async or not run_async:
            return lambda: function(*args, **kwargs)

        def run_coroutine() -> Any:
            coro = function(*args, **kwargs)
            return self._loop().run_until_complete(asyncio.wait_for(coro, ctx.remaining()))

        return run_coroutine

    def finish(self, ctx: JobContext, result: Any, duration: float) -> Success | Lost:
        """The outcome of a call that returned: a success, unless the lease was lost meanwhile."""
        if ctx.lease_lost:
            return Lost(ctx.claim, "its lease was lost while it ran", duration, ctx.started_at)
        if ctx.past_deadline():
            # a plain sync job cannot be stopped by a thread: it ran on and returned; say so
            log.warning(
                "job %s (%s) ran %.1f s, past its timeout of %s s, and returned: recorded as "
                "succeeded (worker threads cannot stop a sync job; long jobs should call "
                "current_job().raise_if_cancelled())",
                ctx.claim.job.id,
                ctx.claim.job.target,
                duration,
                ctx.claim.job.timeout,
                extra={"job": ctx.claim.job},
            )
        try:
            stored = msgspec.to_builtins(result)
        except Exception:  # TypeError, EncodeError, RecursionError (a deeply nested result)
            log.debug("result of job %s cannot be encoded; not kept", ctx.claim.job.id)
            stored = None
        return Success(ctx.claim, result, stored, duration, ctx.started_at)

    def failed(self, ctx: JobContext, exc: BaseException) -> Retrying | Failure | Lost:
        """The outcome of a call that raised: a retry or a failure (a timeout past the deadline)."""
        claim = ctx.claim
        duration = time.perf_counter() - ctx.started if ctx.started else 0.0
        if ctx.lease_lost:
            return Lost(claim, "its lease was lost while it ran", duration, ctx.started_at)
        # an event loop may fire a timer a hair before the deadline: allow 10 ms
        if isinstance(exc, (JobCancelled, TimeoutError, asyncio.CancelledError)) and (
            ctx.deadline is not None and time.monotonic() >= ctx.deadline - 0.01
        ):
            timeout_exc = JobTimeout(f"job ran past its timeout of {claim.job.timeout} s")
            timeout_exc.__cause__ = exc
            exc = timeout_exc
        job = claim.job
        error = attempt_error(exc, job.attempts)
        if should_retry(job.retry, exc, job.attempts):
            run_at = next_run_at(job.retry, exc, job.attempts)
            return Retrying(claim, error, run_at, duration, ctx.started_at)
        return Failure(claim, error, False, duration, ctx.started_at)

    def _loop(self) -> asyncio.AbstractEventLoop:
        """One event loop per worker thread, reused by every async job on it."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            self._local.loop = loop
        return loop

    # -- recording -------------------------------------------------------------

    def record(self, attempts: Sequence[Attempted]) -> list[Outcome]:
        """Write the outcomes of ``attempts``, then run their hooks; one ``Outcome`` each.

        Successes go to storage in one ``complete_many`` call, retries and
        failures one by one, lost attempts not at all. A stale claim
        (``LeaseLost``) or a failed write leaves that job's outcome unrecorded:
        it is ``LOST`` and runs again after its lease.
        """
        successes = [a for a in attempts if type(a) is Success]
        errors: dict[Any, StorageError] = {}
        if successes:
            try:
                errors = self.storage.complete_many([(s.claim, s.stored) for s in successes])
            except StorageError as exc:  # a backend that raised instead of reporting per job
                errors = {s.claim.job.id: exc for s in successes}
            except Exception:  # one bad job broke the batched write: outcome writes are per job
                log.exception("recording %d successes at once failed; one by one", len(successes))
                errors = self._complete_one_by_one(successes)
        outcomes: list[Outcome] = []
        for a in attempts:
            if type(a) is Success:
                error = errors.get(a.claim.job.id)
                if error is not None:
                    self._log_unrecorded(a.claim, error)
                    outcomes.append(Outcome.LOST)
                    continue
                self.hooks.job_succeeded(a.claim, a.result, a.duration)
                outcomes.append(Outcome.SUCCEEDED)
            elif isinstance(a, Retrying):
                outcomes.append(self._record_retry(a))
            elif isinstance(a, Failure):
                outcomes.append(self._record_failure(a))
            else:
                assert isinstance(a, Lost)
                lost = LeaseLost(f"job {a.claim.job.id}: {a.reason}; another worker may run it")
                self._log_unrecorded(a.claim, lost)
                outcomes.append(Outcome.LOST)
        self.hooks.attempts_recorded(attempts, outcomes)
        return outcomes

    def record_successes(self, successes: Sequence[Success]) -> list[Outcome]:
        """``record`` for successes only (kept for executors written against it)."""
        return self.record(successes)

    def _record_retry(self, a: Retrying) -> Outcome:
        claim, error, job = a.claim, a.error, a.claim.job
        if not self._write(claim, lambda: self.storage.retry(claim, a.run_at, error)):
            return Outcome.LOST
        log.info(
            "job %s (%s) attempt %d failed: %s: %s; retrying at %s",
            job.id,
            job.target,
            job.attempts,
            error.type,
            error.message,
            a.run_at.isoformat(),
            extra={"job": job},
        )
        self.hooks.job_retrying(claim, error, a.run_at)
        return Outcome.RETRYING

    def _record_failure(self, a: Failure) -> Outcome:
        claim, error, job = a.claim, a.error, a.claim.job
        if not self._write(claim, lambda: self.storage.fail(claim, error)):
            return Outcome.LOST
        log.warning(
            "job %s (%s) failed for good after %d attempt(s): %s: %s",
            job.id,
            job.target,
            job.attempts,
            error.type,
            error.message,
            extra={"job": job},
        )
        if a.missing:
            self.hooks.job_target_missing(claim, error)
        else:
            self.hooks.job_failed(claim, error)
        return Outcome.FAILED

    def _write(self, claim: Claim, write: Callable[[], None]) -> bool:
        try:
            write()
        except StorageError as exc:
            self._log_unrecorded(claim, exc)
            return False
        return True

    def _complete_one_by_one(self, successes: Sequence[Success]) -> dict[Any, StorageError]:
        """Record each success alone, so a job the batch write chokes on fails only itself."""
        errors: dict[Any, StorageError] = {}
        for s in successes:
            try:
                errors.update(self.storage.complete_many([(s.claim, s.stored)]))
            except StorageError as exc:
                errors[s.claim.job.id] = exc
            except Exception as exc:
                errors[s.claim.job.id] = StorageError(
                    f"recording the success of job {s.claim.job.id} failed: {exc!r}"
                )
        return errors

    def _log_unrecorded(self, claim: Claim, exc: StorageError) -> None:
        self.hooks.job_lost(claim, exc)
        if isinstance(exc, LeaseLost):  # its own logger: ``worker -v`` silences oddjob.worker
            fencing.warning("%s", exc, extra={"job": claim.job})
            return
        log.error(
            "could not record the outcome of job %s: %s; it will run again after its lease expires",
            claim.job.id,
            exc,
            extra={"job": claim.job},
        )
