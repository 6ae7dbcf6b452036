"""Retry decisions: which errors retry, how long to wait, and how a job asks for a retry itself."""

from __future__ import annotations

import os
import random
import traceback
from datetime import datetime, timedelta

import pluggy

from .clock import as_utc, utcnow
from .model import AttemptError, RetryPolicy


class Retry(Exception):
    """Raise from a job to run it again later; it counts as an attempt against ``max_retries``."""

    def __init__(
        self,
        reason: str = "retry requested",
        *,
        at: datetime | None = None,
        delay: float | timedelta | None = None,
    ) -> None:
        super().__init__(reason)
        if at is not None and delay is not None:
            raise ValueError("give Retry either at= or delay=, not both")
        if isinstance(delay, timedelta):
            delay = delay.total_seconds()
        self.at = as_utc(at) if at is not None else None
        self.delay = delay


class JobTimeout(Exception):
    """An attempt ran past its ``timeout``."""


def exception_name(exc: BaseException) -> str:
    """``module.Qualname`` of an exception's class, the form stored and matched by policies."""
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def _matches(exc: BaseException, names: tuple[str, ...]) -> bool:
    for cls in type(exc).__mro__:
        full = f"{cls.__module__}.{cls.__qualname__}"
        if full in names or cls.__qualname__ in names:
            return True
    return False


def should_retry(policy: RetryPolicy, exc: BaseException, attempt: int) -> bool:
    """True if attempt number ``attempt`` (1-based) failing with ``exc`` earns another attempt."""
    if attempt > policy.max_retries:
        return False
    if isinstance(exc, Retry):
        return True
    if policy.give_up_on and _matches(exc, policy.give_up_on):
        return False
    if policy.retry_on:
        return _matches(exc, policy.retry_on)
    return True


def next_run_at(policy: RetryPolicy, exc: BaseException, attempt: int) -> datetime:
    """When the next attempt may run: the job's own request, else backoff with jitter."""
    now = utcnow()
    if isinstance(exc, Retry):
        if exc.at is not None:
            return max(exc.at, now)
        if exc.delay is not None:
            return now + timedelta(seconds=max(0.0, exc.delay))
    wait = min(policy.max_wait, policy.min_wait * policy.backoff ** max(0, attempt - 1))
    wait += wait * policy.jitter * random.random()
    return now + timedelta(seconds=wait)


_INTERNAL = (
    os.path.dirname(pluggy.__file__),
    os.path.join(os.path.dirname(__file__), "engine"),
    os.path.join(os.path.dirname(__file__), "plugins.py"),
)


def attempt_error(exc: BaseException, attempt: int) -> AttemptError:
    """Describe a failed attempt: exception type, message, and the traceback from the job down.

    Leading frames of oddjob's runner and pluggy are dropped: they are the same
    for every job and hide the frames that matter.
    """
    tb = exc.__traceback__
    while (
        tb is not None
        and tb.tb_next is not None
        and tb.tb_frame.f_code.co_filename.startswith(_INTERNAL)
    ):
        tb = tb.tb_next
    return AttemptError(
        attempt=attempt,
        type=exception_name(exc),
        message=str(exc) or type(exc).__name__,
        traceback="".join(traceback.format_exception(type(exc), exc, tb)),
        at=utcnow(),
    )
