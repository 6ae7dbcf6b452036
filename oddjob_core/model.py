"""The job model: the self-contained envelope, stored records, claims and queries.

The envelope is what a backend stores or sends: one msgspec Struct that holds
everything needed to run the job (the RabbitMQ message body *is* an envelope).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec


class JobState(enum.StrEnum):
    """Where a job is in its life; finished states are succeeded, failed, cancelled."""

    SCHEDULED = "scheduled"  # new, run_at was in the future when added
    READY = "ready"  # new, due when added (or requeued)
    RUNNING = "running"  # claimed and leased by a worker
    RETRYING = "retrying"  # an attempt failed; waits for run_at
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # dead: retries exhausted, target refused/missing, corrupt
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for states a job never leaves by itself."""
        return self in FINISHED_STATES

    @property
    def waiting(self) -> bool:
        """True for states from which a due job can be claimed."""
        return self in WAITING_STATES


FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
WAITING_STATES = frozenset({JobState.SCHEDULED, JobState.READY, JobState.RETRYING})


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How often and how late a failed job runs again.

    Wait before retry n (1-based) is ``min(max_wait, min_wait * backoff**(n-1))``
    with up to ``jitter`` of it added at random. ``retry_on`` / ``give_up_on``
    hold exception class names (``"module.Class"`` or bare ``"Class"``) matched
    against the raised exception's MRO; ``give_up_on`` wins.
    """

    max_retries: int = 3
    min_wait: float = 1.0
    max_wait: float = 3600.0
    backoff: float = 2.0
    jitter: float = 0.1
    retry_on: tuple[str, ...] = ()
    give_up_on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.min_wait < 0 or self.max_wait < self.min_wait:
            raise ValueError(
                f"need 0 <= min_wait <= max_wait, got min_wait={self.min_wait} max_wait={self.max_wait}"
            )
        if self.backoff < 1:
            raise ValueError(f"backoff must be >= 1, got {self.backoff}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")


class AttemptError(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One failed attempt: what was raised, where, and when."""

    attempt: int
    type: str  # "module.Qualname" of the exception
    message: str
    traceback: str = ""
    at: datetime


class Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A job as stored or sent: self-contained, readable JSON, no pickle.

    ``arguments`` maps each parameter name of the target to its value encoded
    as msgspec builtins; the worker converts them back to the annotated types.
    ``attempts`` counts attempts started so far (a store increments it on claim).
    ``headers`` carries small string metadata that plugins attach at enqueue
    (e.g. the W3C trace context); jobs stored before it existed decode with none.
    """

    id: uuid.UUID
    queue: str
    target: str
    arguments: dict[str, Any]
    run_at: datetime
    created_at: datetime
    priority: int = 0
    retry: RetryPolicy = RetryPolicy()
    timeout: float | None = None
    attempts: int = 0
    errors: tuple[AttemptError, ...] = ()
    headers: dict[str, str] = {}
    schedule: str | None = None  # the schedule whose tick (or trigger) made this job
    key: str | None = None  # unique key: at most one waiting or running job per (key, queue)


class JobRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A stored job with its state, as management calls return it."""

    envelope: Envelope
    state: JobState
    updated_at: datetime
    finished_at: datetime | None = None
    result: Any = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None

    @property
    def id(self) -> uuid.UUID:
        """The job id (the envelope's)."""
        return self.envelope.id


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """A leased job handed to a worker.

    ``job.attempts`` already counts this attempt. ``token`` is the fencing
    token: every outcome write must present it, and a store refuses a write
    whose token is no longer the current one (``LeaseLost``). ``recovered`` is
    true when the previous lease expired without an outcome (a crashed worker).
    ``receipt`` is backend-private data (e.g. a delivery tag).
    """

    job: Envelope
    token: str
    owner: str
    lease_expires_at: datetime
    recovered: bool = False
    receipt: Any = None


class JobQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters for ``Storage.search``; ``None`` means "any". Times bound ``created_at``."""

    queue: str | None = None
    states: tuple[JobState, ...] | None = None
    target: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    arguments: dict[str, Any] | None = None  # top-level argument equality (capability)
    limit: int = 50
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= 10_000:
            raise ValueError(f"limit must be between 1 and 10000, got {self.limit}")
        if self.offset < 0:
            raise ValueError(f"offset must be >= 0, got {self.offset}")

    def matches(self, record: JobRecord) -> bool:
        """Whether ``record`` passes every filter (for backends that filter in Python)."""
        env = record.envelope
        return (
            (self.queue is None or env.queue == self.queue)
            and (self.states is None or record.state in self.states)
            and (self.target is None or env.target == self.target)
            and (self.created_after is None or env.created_at >= self.created_after)
            and (self.created_before is None or env.created_at < self.created_before)
            and (
                not self.arguments
                or all(
                    k in env.arguments and env.arguments[k] == v for k, v in self.arguments.items()
                )
            )
        )


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """One page of search results, newest first; ``total`` counts all matches."""

    jobs: list[JobRecord]
    total: int
    offset: int
    limit: int

    @classmethod
    def of(cls, records: Iterable[JobRecord], query: JobQuery) -> Page:
        """The page of ``records`` matching ``query``: newest (highest id) first, then offset/limit."""
        matched = sorted(
            (r for r in records if query.matches(r)), key=lambda r: r.envelope.id, reverse=True
        )
        return cls(
            jobs=matched[query.offset : query.offset + query.limit],
            total=len(matched),
            offset=query.offset,
            limit=query.limit,
        )
