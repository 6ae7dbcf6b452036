"""The storage contract every backend implements (sync; async clients run their own loop thread).

Delivery is at-least-once. A claim leases jobs; a worker that dies loses its
lease and the job is claimed again once the lease expires. Every outcome write
(complete, retry, fail, release, extend) presents the claim's fencing token,
so a stale worker can never overwrite the newer owner's outcome.

Poison isolation: a stored job that cannot be decoded, routed or written back
is failed on its own, with the reason, and never blocks, repeats or crashes
the other jobs of its claim or batch. Decode through
``oddjob_core.poison.decode_stored`` (any exception, ``RecursionError``
included, makes the job corrupt) and check it with ``check_route``; outcome
writes are per job even when batched (``complete_many`` reports a job it
could not write in its returned map, it never raises for one job).

Times are aware UTC datetimes. "now" is the store's own clock when it has one
that every client shares (a database server's), else the calling process's
``oddjob_core.clock.utcnow()``; workers on hosts whose clocks disagree then
see jobs due, and leases expire, early or late by the skew. Bounds are
inclusive where a name says "at" or "after" (``run_at <= now`` is due, a lease
expiring at ``now`` has expired) and exclusive where it says "before".
The conformance suite (``oddjob_core.testing.StorageSuite``) tests each
promise written here.
"""

from __future__ import annotations

import abc
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import msgspec

from .errors import LeaseLost, StorageError, UnsupportedOperation
from .model import AttemptError, Claim, Envelope, JobQuery, JobRecord, JobState, Page


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """How a backend behaves; the conformance suite skips, visibly, what it does not do.

    Which management operations a backend offers is not a flag: it is whether
    it implements ``QueueManagement`` / ``JobManagement`` (see ``management_of``).
    """

    priority: bool = True  # higher priority claimed first
    fifo: bool = True  # among equal priority and run_at, oldest first
    lease_expiry: bool = True  # an expired lease makes the job claimable again
    keeps_finished: bool = True  # succeeded jobs stay queryable until purged
    shared_between_processes: bool = True
    search_by_argument: bool = False  # JobQuery.arguments filters (JobManagement.search)


class Storage(abc.ABC):
    """Where jobs live. Thread-safe: one instance serves a whole worker process."""

    name: ClassVar[str] = "?"
    capabilities: ClassVar[Capabilities] = Capabilities()

    # -- producing --------------------------------------------------------------

    @abc.abstractmethod
    def add(self, jobs: Sequence[Envelope]) -> None:
        """Store new jobs durably, in one round trip where the backend allows.

        A job is stored ``scheduled`` when its ``run_at`` is after now, else
        ``ready``. Re-adding an id that is already stored changes nothing: the
        stored job keeps its envelope, state, attempts, errors and result,
        whatever the new envelope holds and whatever state the job is in
        (waiting, running or finished), so a retried add is idempotent and the
        first add of an id wins. When this returns, every job is stored; when it
        raises, callers must assume none or some were stored.
        """

    # -- consuming --------------------------------------------------------------

    @abc.abstractmethod
    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        """Lease up to ``limit`` due jobs of ``queue`` for ``lease`` seconds.

        Due means: waiting (scheduled/ready/retrying) with ``run_at <= now``, or
        running with a lease that expired (``lease_expires_at <= now``: a
        crashed worker's; claimed with ``recovered=True``). A finished job
        (succeeded, failed, cancelled) is never due, whatever lease it once had.
        Order: expired leases may come first (they are overdue); waiting jobs by
        priority (high first), then run_at (earliest first), then id (smallest
        first: UUIDv7 ids grow with creation time, so among equal priority and
        run_at the oldest job goes first, FIFO). Each claim increments
        ``attempts``, sets the job ``running`` until ``now + lease`` for ``owner``
        and carries a fresh fencing token. A stored job that cannot be decoded or
        routed (any exception while decoding; an envelope naming another queue or
        id than where it is stored; an attempt counter at its maximum) is failed
        with the reason (kept in its errors) and skipped: the other jobs of the
        claim are returned, and a claim never raises after it has leased jobs
        (they would stay running until their lease expires).
        """

    @abc.abstractmethod
    def complete(self, claim: Claim, result: Any = None) -> None:
        """Mark the job succeeded with its (builtins-encoded) result; ``LeaseLost`` if stale.

        Its lease ends: the job is never claimed again (``keeps_finished``
        backends keep it, with its result, until purged).
        """

    def complete_many(self, done: Sequence[tuple[Claim, Any]]) -> dict[uuid.UUID, StorageError]:
        """Record many successes ``(claim, result)`` at once; return the ones *not* recorded.

        The returned map holds, per job id, ``LeaseLost`` for a stale claim or the
        ``StorageError`` that kept its write from landing (that job runs again
        after its lease). Every job absent from it is recorded as succeeded.
        Workers hand finished jobs over in batches, so a backend that writes
        them in one round trip (one UPDATE, one fsync) drains much faster. The
        default calls ``complete`` per job and stops writing after the first
        storage failure (the store is likely down; the rest wait for their lease).
        """
        errors: dict[uuid.UUID, StorageError] = {}
        down: StorageError | None = None
        for claim, result in done:
            if down is not None:
                errors[claim.job.id] = down
                continue
            try:
                self.complete(claim, result)
            except LeaseLost as exc:
                errors[claim.job.id] = exc
            except StorageError as exc:
                errors[claim.job.id] = down = exc
        return errors

    @abc.abstractmethod
    def retry(self, claim: Claim, run_at: datetime, error: AttemptError) -> None:
        """Record ``error`` and make the job due again at ``run_at``; ``LeaseLost`` if stale.

        The job becomes ``retrying`` with its lease ended; ``error`` is appended
        to its errors (earlier ones kept), ``attempts`` stays as claimed.
        """

    @abc.abstractmethod
    def fail(self, claim: Claim, error: AttemptError) -> None:
        """Record ``error`` and mark the job failed for good; ``LeaseLost`` if stale.

        ``error`` is appended to the job's errors (every earlier attempt's kept);
        the lease ends and the job is never claimed again unless requeued.
        """

    @abc.abstractmethod
    def release(self, claims: Sequence[Claim]) -> None:
        """Give back claimed jobs that never started: due now, this attempt not counted.

        Each job becomes ``ready`` with its lease ended and ``attempts`` one
        lower (as before the claim); its ``run_at`` is kept (it had passed when
        the job was claimed), so it is due at once and keeps its place in the
        claim order. Stale claims are skipped silently (their new owner keeps them).
        """

    @abc.abstractmethod
    def extend(self, claims: Sequence[Claim], lease: float) -> set[uuid.UUID]:
        """Renew the leases of running jobs to ``now + lease``; return ids whose lease was lost.

        A lost lease (stale token, finished or purged job) is reported, never renewed.
        """

    @abc.abstractmethod
    def next_due(self, queue: str) -> datetime | None:
        """The earliest time a job of ``queue`` may become claimable (None: nothing will).

        That is the minimum over waiting jobs' ``run_at`` *and* running jobs'
        lease expiry (a crashed worker's job comes back then): a queue whose
        only job is running is not empty. Finished jobs count for nothing.
        The time may be in the past (a job is due now). Used to sleep no longer
        than needed, and by burst mode to decide it is done: a backend that
        cannot tell must still answer conservatively (e.g. "now" while jobs wait).
        """

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Block up to ``timeout`` seconds or until new work may be due (e.g. LISTEN/NOTIFY).

        The default sleeps; backends with push notifications override it.
        """
        threading.Event().wait(timeout)

    def close(self) -> None:
        """Release connections and threads; the instance is unusable afterwards."""

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class QueueManagement(abc.ABC):
    """Counting, requeueing and purging stored jobs: what a backend offers beside the hot path.

    A backend implements it (``class MyStorage(Storage, JobManagement)``) when
    it can; callers find it with ``queue_management_of(storage)``. RabbitMQ
    implements only this part (a queue has no random access by id).
    """

    @abc.abstractmethod
    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        """Number of jobs per queue and state (states with no job may be omitted).

        ``queue`` limits the answer to that one queue (absent when it holds no job).
        """

    @abc.abstractmethod
    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        """Make a failed, cancelled or succeeded job waiting again with a fresh retry budget.

        The job becomes due at ``run_at`` (default: now) and is ``scheduled``
        when that is after now, else ``ready``. ``attempts`` goes back to 0 and
        the old result is dropped; its past errors are kept (the history of why
        it failed stays readable, and the next failure is appended to them).
        True when requeued; False if the job is unknown, waiting or running.
        A job with a unique key (``oddjob_core.unique``) whose key another
        waiting or running job holds is left as it is: ``KeyHeld`` names that job.
        """

    def purge(
        self,
        states: Iterable[JobState],
        older_than: datetime | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete finished jobs in ``states`` last updated before ``older_than``; return how many.

        ``older_than`` is exclusive (a job updated exactly then stays); None
        means any age. ``queue`` limits it to one queue. ``ValueError`` for an
        unfinished state: waiting and running jobs are never purged. Backends
        implement ``purge_finished``, which gets checked states only.
        """
        return self.purge_finished(check_purge_states(states), older_than, queue)

    @abc.abstractmethod
    def purge_finished(
        self, states: tuple[JobState, ...], older_than: datetime | None, queue: str | None
    ) -> int:
        """``purge`` once its states are known to be finished ones."""


class JobManagement(QueueManagement):
    """Full management: counts, requeue, purge plus random access (get, search, cancel, delete)."""

    @abc.abstractmethod
    def get(self, job_id: uuid.UUID) -> JobRecord | None:
        """The job with this id, or None."""

    @abc.abstractmethod
    def search(self, query: JobQuery) -> Page:
        """Jobs matching ``query``, newest first (by id), paged; ``total`` counts every match.

        Every filter given must hold: ``queue``, ``target`` and argument values
        are equal, ``states`` contains the job's state, and ``created_at`` is in
        ``[created_after, created_before)``: ``created_after`` inclusive,
        ``created_before`` exclusive, so adjacent ranges never count a job twice.
        """

    @abc.abstractmethod
    def cancel(self, job_id: uuid.UUID) -> bool:
        """Cancel a waiting job: it becomes ``cancelled`` and is never claimed.

        False if it is running, finished or unknown.
        """

    @abc.abstractmethod
    def delete(self, job_id: uuid.UUID) -> bool:
        """Remove one job for good, whatever its state but running: gone from get, search, counts.

        Like Hangfire's Delete, a waiting job may go too (it is then never
        claimed) and so may a finished one. A running job is refused (False): a
        worker holds its lease and its code keeps running, so deleting the row
        would only hide work in progress (cancel it first if waiting, or delete
        it once it finished). False too for an unknown id. Its unique key, if
        any, is released, and re-adding its id later stores a new job.
        """


class DelegatedManagement(JobManagement):
    """``JobManagement`` forwarded to ``self.management``, for a backend that keeps it in a module.

    ``class MyStorage(Storage, DelegatedManagement)`` sets ``self.management`` to
    its own ``JobManagement`` (e.g. ``management.Management(...)``).
    """

    management: JobManagement

    def get(self, job_id: uuid.UUID) -> JobRecord | None:
        return self.management.get(job_id)

    def search(self, query: JobQuery) -> Page:
        return self.management.search(query)

    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        return self.management.counts(queue)

    def cancel(self, job_id: uuid.UUID) -> bool:
        return self.management.cancel(job_id)

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        return self.management.requeue(job_id, run_at)

    def delete(self, job_id: uuid.UUID) -> bool:
        return self.management.delete(job_id)

    def purge_finished(
        self, states: tuple[JobState, ...], older_than: datetime | None, queue: str | None
    ) -> int:
        return self.management.purge_finished(states, older_than, queue)


def queue_management_of(storage: Storage) -> QueueManagement | None:
    """``storage`` as ``QueueManagement`` (counts, requeue, purge), or None if it offers none."""
    return storage if isinstance(storage, QueueManagement) else None


def management_of(storage: Storage) -> JobManagement | None:
    """``storage`` as ``JobManagement`` (get, search, cancel too), or None if it offers none."""
    return storage if isinstance(storage, JobManagement) else None


def require_management(storage: Storage, operation: str) -> JobManagement:
    """``storage`` as ``JobManagement``, or ``UnsupportedOperation`` naming ``operation``."""
    if isinstance(storage, JobManagement):
        return storage
    raise not_implemented(storage, JobManagement, operation)


def require_queue_management(storage: Storage, operation: str) -> QueueManagement:
    """``storage`` as ``QueueManagement``, or ``UnsupportedOperation`` naming ``operation``."""
    if isinstance(storage, QueueManagement):
        return storage
    raise not_implemented(storage, QueueManagement, operation)


def not_implemented(storage: Storage, interface: type, operation: str) -> UnsupportedOperation:
    """The error for an ``operation`` that needs an ``interface`` the backend lacks."""
    return UnsupportedOperation(
        f"storage '{storage.name}' cannot {operation}: it does not implement "
        f"{interface.__name__} (see the backend's documentation for what it offers)"
    )


def check_purge_states(states: Iterable[JobState]) -> tuple[JobState, ...]:
    """Validate purge states: only finished jobs may be purged (waiting ones would be lost)."""
    chosen = tuple(JobState(s) for s in states)
    unfinished = [s.value for s in chosen if not s.finished]
    if unfinished:
        raise ValueError(
            f"cannot purge jobs in state {', '.join(unfinished)}: only succeeded, failed or "
            "cancelled jobs can be purged; cancel waiting jobs first"
        )
    return chosen


Token = TypeVar("Token")


def success_not_recorded(job_id: uuid.UUID) -> LeaseLost:
    """The error for a success whose claim no longer owns the job."""
    return LeaseLost(
        f"job {job_id} is no longer leased by this claim (its lease expired and another "
        "worker claimed it, or it was finished, cancelled or purged); success not recorded"
    )


def complete_in_chunks(
    done: Sequence[tuple[Claim, Any]],
    token_of: Callable[[Claim], Token | None],
    write: Callable[[list[tuple[uuid.UUID, Token, Any]]], set[uuid.UUID]],
    *,
    chunk_size: int = 500,
) -> dict[uuid.UUID, StorageError]:
    """The body of a ``complete_many`` that writes ``(id, token, result)`` chunks in one statement each.

    ``token_of`` gives the backend's form of a claim's token (None: not one of
    its own, so the claim owns nothing); ``write`` returns the ids it recorded, and
    every id it leaves out lost its lease. A ``StorageError`` from ``write`` fails
    only its own chunk.
    """
    errors: dict[uuid.UUID, StorageError] = {}
    items: list[tuple[uuid.UUID, Token, Any]] = []
    for claim, result in done:
        token = token_of(claim)
        if token is None:
            errors[claim.job.id] = success_not_recorded(claim.job.id)
        else:
            items.append((claim.job.id, token, result))
    for start in range(0, len(items), chunk_size):
        chunk = items[start : start + chunk_size]
        try:
            recorded = write(chunk)
        except StorageError as exc:
            errors.update((job_id, exc) for job_id, _, _ in chunk)
            continue
        for job_id, _, _ in chunk:
            if job_id not in recorded:
                errors[job_id] = success_not_recorded(job_id)
    return errors
