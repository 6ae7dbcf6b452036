"""Run one claimed job end to end: resolve, decode, call, record the outcome, then notify.

The outcome is written to storage *before* the lifecycle hooks run, so a hook
never reports a state the store does not have. A write refused because the
lease was lost (``LeaseLost``) is logged and skipped: the newer owner's
outcome stands. Successes can be recorded in batches (``attempt`` then
``record_successes``): executors hand them over so one storage write covers
many jobs, and the ``job_succeeded`` hooks run once that write has landed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import LeaseLost, PayloadError, StorageError, TargetMissing, TargetNotAllowed
from ..model import Claim
from ..plugins import Hooks
from ..retrying import JobTimeout, attempt_error, next_run_at, should_retry
from ..storage import Storage
from ..targets import Target, TargetResolver
from .context import JobCancelled, JobContext, _current

log = logging.getLogger("oddjob.worker")


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


class JobRunner:
    """Executes claims; one instance is shared by every worker thread of a process."""

    def __init__(self, storage: Storage, hooks: Hooks, targets: TargetResolver) -> None:
        self.storage = storage
        self.hooks = hooks
        self.targets = targets
        self._local = threading.local()

    def context_for(self, claim: Claim) -> JobContext:
        """A fresh context with the job's deadline set from its timeout."""
        timeout = claim.job.timeout
        return JobContext(claim, deadline=time.monotonic() + timeout if timeout else None)

    def run(self, claim: Claim, context: JobContext | None = None) -> Outcome:
        """Run one attempt and record its outcome; never raises for a job's own failure."""
        attempt = self.attempt(claim, context)
        if isinstance(attempt, Success):
            return self.record_successes([attempt])[0]
        return attempt

    def attempt(self, claim: Claim, context: JobContext | None = None) -> Success | Outcome:
        """Run one attempt. A failure is recorded here; a success is returned unrecorded.

        The caller passes successes to ``record_successes``, alone or batched
        with others (one storage write for many jobs), before anything else
        may treat the job as done.
        """
        ctx = context or self.context_for(claim)
        self.hooks.job_started(claim)
        try:
            target = self.targets.resolve(claim.job.target)
            args, kwargs = target.plan.decode(claim.job.arguments)
        except TargetMissing as exc:
            return self._fail(claim, exc, missing=True)
        except (TargetNotAllowed, PayloadError) as exc:
            return self._fail(claim, exc)
        token = _current.set(ctx)
        started = time.perf_counter()
        try:
            call = self._bind(target, args, kwargs, ctx)  # may raise: DI is user code too
            result = self.hooks.run_job(ctx, call)
        except Exception as exc:
            if (
                isinstance(exc, (JobCancelled, TimeoutError))
                and ctx.deadline is not None
                and time.monotonic() >= ctx.deadline
            ):
                timeout_exc = JobTimeout(f"job ran past its timeout of {claim.job.timeout} s")
                timeout_exc.__cause__ = exc
                exc = timeout_exc
            return self._failed_attempt(claim, exc)
        finally:
            _current.reset(token)
            ctx.recording = True
        duration = time.perf_counter() - started
        try:
            stored = msgspec.to_builtins(result)
        except (TypeError, msgspec.EncodeError):
            log.debug("result of job %s cannot be encoded; not kept", claim.job.id)
            stored = None
        return Success(claim, result, stored, duration)

    # -- calling -------------------------------------------------------------

    def _bind(
        self, target: Target, args: tuple[Any, ...], kwargs: dict[str, Any], ctx: JobContext
    ) -> Callable[[], Any]:
        function = target.function
        if target.owner is not None:
            instance = self.hooks.resolve_instance(target.owner)
            function = getattr(instance, function.__name__)
        if not target.is_async:
            return lambda: function(*args, **kwargs)

        def run_async() -> Any:
            coro = function(*args, **kwargs)
            remaining = None if ctx.deadline is None else max(0.0, ctx.deadline - time.monotonic())
            return self._loop().run_until_complete(asyncio.wait_for(coro, remaining))

        return run_async

    def _loop(self) -> asyncio.AbstractEventLoop:
        """One event loop per worker thread, reused by every async job on it."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            self._local.loop = loop
        return loop

    # -- recording -----------------------------------------------------------

    def record_successes(self, successes: Sequence[Success]) -> list[Outcome]:
        """Record successes in one storage call, then run ``job_succeeded`` for each recorded one.

        A stale claim (``LeaseLost``) or a failed write leaves that job's
        outcome unrecorded: it is ``LOST`` and runs again after its lease.
        """
        try:
            errors = self.storage.complete_many([(s.claim, s.stored) for s in successes])
        except StorageError as exc:  # a backend that raised instead of reporting per job
            errors = {s.claim.job.id: exc for s in successes}
        for s in successes:
            error = errors.get(s.claim.job.id)
            if error is not None:
                self._log_unrecorded(s.claim, error)
        outcomes: list[Outcome] = []
        for s in successes:
            if s.claim.job.id in errors:
                outcomes.append(Outcome.LOST)
                continue
            self.hooks.job_succeeded(s.claim, s.result, s.duration)
            outcomes.append(Outcome.SUCCEEDED)
        return outcomes

    def _failed_attempt(self, claim: Claim, exc: BaseException) -> Outcome:
        job = claim.job
        if not should_retry(job.retry, exc, job.attempts):
            return self._fail(claim, exc)
        error = attempt_error(exc, job.attempts)
        run_at = next_run_at(job.retry, exc, job.attempts)
        if not self._record(claim, lambda: self.storage.retry(claim, run_at, error)):
            return Outcome.LOST
        log.info(
            "job %s (%s) attempt %d failed: %s: %s; retrying at %s",
            job.id,
            job.target,
            job.attempts,
            error.type,
            error.message,
            run_at.isoformat(),
            extra={"job": job},
        )
        self.hooks.job_retrying(claim, error, run_at)
        return Outcome.RETRYING

    def _fail(self, claim: Claim, exc: BaseException, *, missing: bool = False) -> Outcome:
        job = claim.job
        error = attempt_error(exc, job.attempts)
        if not self._record(claim, lambda: self.storage.fail(claim, error)):
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
        if missing:
            self.hooks.job_target_missing(claim, error)
        else:
            self.hooks.job_failed(claim, error)
        return Outcome.FAILED

    def _record(self, claim: Claim, write: Callable[[], None]) -> bool:
        try:
            write()
        except StorageError as exc:
            self._log_unrecorded(claim, exc)
            return False
        return True

    def _log_unrecorded(self, claim: Claim, exc: StorageError) -> None:
        self.hooks.job_lost(claim, exc)
        if isinstance(exc, LeaseLost):
            log.warning("%s", exc, extra={"job": claim.job})
            return
        log.error(
            "could not record the outcome of job %s: %s; it will run again after its lease expires",
            claim.job.id,
            exc,
            extra={"job": claim.job},
        )
