"""What a running job can see about itself: id, attempt, recovered flag, cancellation."""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from dataclasses import dataclass, field

from ..model import Claim

_event_lock = threading.Lock()


class JobCancelled(Exception):
    """Raised by ``JobContext.raise_if_cancelled`` once the job's timeout passed or the worker stops."""


@dataclass
class JobContext:
    """The running attempt. Long jobs should call ``raise_if_cancelled()`` now and then."""

    claim: Claim
    deadline: float | None = None  # time.monotonic() value, or None
    recording: bool = False  # the job returned; its outcome is being written to storage
    lease_lost: bool = False  # storage said another worker may own the job now
    started_at: float = 0.0  # time.time() when the attempt began (0: not begun)
    started: float = 0.0  # time.perf_counter() then, for its duration
    _cancel: threading.Event | None = field(default=None, repr=False)

    @property
    def cancel_event(self) -> threading.Event:
        """Set once the job should stop; ``cancel_event.wait(s)`` is a cancellable sleep.

        Made on first use: most jobs never look, and an Event costs a lock and a condition.
        """
        event = self._cancel
        if event is None:
            with _event_lock:
                if self._cancel is None:
                    self._cancel = threading.Event()
                event = self._cancel
        return event

    @property
    def job_id(self) -> uuid.UUID:
        return self.claim.job.id

    @property
    def attempt(self) -> int:
        """1 for the first attempt."""
        return self.claim.job.attempts

    @property
    def recovered(self) -> bool:
        """True when the previous attempt's worker died without recording an outcome."""
        return self.claim.recovered

    def past_deadline(self) -> bool:
        """True once the job's timeout has passed (never for a job without a timeout)."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def remaining(self) -> float | None:
        """Seconds left before the timeout (0 once passed), or None without a timeout."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def check_deadline(self) -> bool:
        """Cancel the job if its timeout passed; True if it did. Executors call it on a tick."""
        if self.past_deadline():
            self.cancel()
            return True
        return False

    def cancel(self) -> None:
        """Ask the job to stop (``cancelled`` turns true, ``cancel_event`` is set)."""
        self.cancel_event.set()

    def lose_lease(self) -> None:
        """Storage reported the lease lost: cancel the job; its outcome will not be written."""
        self.lease_lost = True
        self.cancel()

    @property
    def cancelled(self) -> bool:
        """True once the job should stop: its timeout passed, its lease was lost, or it was asked to stop."""
        self.check_deadline()
        return self._cancel is not None and self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        """Cooperative cancellation point: raise ``JobCancelled`` if the job should stop."""
        if self.cancelled:
            raise JobCancelled(
                f"job {self.job_id} was cancelled (timeout, lease lost or worker shutdown)"
            )


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "oddjob_current_job", default=None
)


def current_job() -> JobContext:
    """The context of the job running on this thread or task; ``RuntimeError`` outside a job."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("current_job() called outside a running oddjob job")
    return ctx
