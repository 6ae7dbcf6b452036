"""``app.wait(job_id)``: block until a job finished, return its typed result or raise its error."""

from __future__ import annotations

import asyncio
import importlib
import time
import typing
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from .errors import JobFailed, PayloadError, WaitTimeout
from .model import JobRecord, JobState

#: first and longest pause between two looks at the job
FIRST_POLL = 0.02
MAX_POLL = 0.5

_FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def return_type(target: str) -> Any:
    """The return annotation of ``module:qualname`` (``Any`` when absent or unresolvable)."""
    module_name, _, qualname = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        hint = typing.get_type_hints(obj).get("return", Any)
    except Exception:  # not importable here, or forward references: hand back the stored value
        return Any
    return Any if hint is type(None) or hint is None else hint


def outcome(record: JobRecord) -> Any:
    """The finished job's result as its target's return type, or its error raised."""
    env = record.envelope
    if record.state is JobState.SUCCEEDED:
        hint = return_type(env.target)
        if hint is Any or record.result is None:
            return record.result
        try:
            return msgspec.convert(record.result, hint, strict=False)
        except msgspec.ValidationError as exc:
            raise PayloadError(
                f"the result of job {env.id} does not match the return annotation of "
                f"{env.target}: {exc}"
            ) from exc
    error = env.errors[-1] if env.errors else None
    if record.state is JobState.CANCELLED:
        raise JobFailed(f"job {env.id} ({env.target}) was cancelled", record, error)
    what = f"{error.type}: {error.message}" if error else "no error recorded"
    raise JobFailed(
        f"job {env.id} ({env.target}) failed after {env.attempts} attempt(s): {what}",
        record,
        error,
    )


class _Pacer:
    """Growing pauses between looks at a job, cut short by the deadline (shared by sync and async)."""

    def __init__(self, job_id: uuid.UUID, timeout: float | None) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.pause = FIRST_POLL

    def next_pause(self, record: JobRecord) -> float:
        """Seconds to wait before looking again; ``WaitTimeout`` once the deadline passed."""
        pause = self.pause
        self.pause = min(MAX_POLL, pause * 1.5)
        if self.deadline is None:
            return pause
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(
                f"job {self.job_id} did not finish within {self.timeout:g} s (it is "
                f"{record.state.value}); is a worker running its queue?"
            )
        return min(pause, left)


def wait(get: Callable[[], JobRecord], job_id: uuid.UUID, timeout: float | None) -> Any:
    """Look at the job with growing pauses until it finished or ``timeout`` passed."""
    pacer = _Pacer(job_id, timeout)
    while True:
        record = get()
        if record.state in _FINISHED:
            return outcome(record)
        time.sleep(pacer.next_pause(record))


async def wait_async(get: Callable[[], JobRecord], job_id: uuid.UUID, timeout: float | None) -> Any:
    """``wait`` for asyncio code: storage reads run off the event loop."""
    pacer = _Pacer(job_id, timeout)
    while True:
        record = await asyncio.to_thread(get)
        if record.state in _FINISHED:
            return outcome(record)
        await asyncio.sleep(pacer.next_pause(record))
