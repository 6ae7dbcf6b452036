"""A thread-safe in-process store with indexed claims: the reference implementation of the contract."""

from __future__ import annotations

import heapq
import itertools
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from ..clock import utcnow
from ..errors import LeaseLost
from ..history import FinishedHistory, MinuteCount, per_minute
from ..model import (
    FINISHED_STATES,
    AttemptError,
    Claim,
    Envelope,
    JobQuery,
    JobRecord,
    JobState,
    Page,
)
from ..storage import Capabilities, JobManagement, Storage
from ..worker_registry import WorkerInfo, WorkerRegistry, live_workers
from .keyvalue import MemoryKeyValue
from .unique import MemoryUniqueKeys


@dataclass
class _Row:
    envelope: Envelope
    state: JobState
    updated_at: datetime
    finished_at: datetime | None = None
    result: Any = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    token: str = ""
    version: int = 0  # bumps whenever the row leaves the waiting heap entry it had

    def record(self) -> JobRecord:
        return JobRecord(  # every JobRecord field is a field of the row
            **{name: getattr(self, name) for name in JobRecord.__struct_fields__},
        )


class MemoryStorage(
    Storage, JobManagement, MemoryKeyValue, MemoryUniqueKeys, WorkerRegistry, FinishedHistory
):
    """Jobs in dicts and heaps behind one lock; due-job lookup is O(log n)."""

    name = "memory"
    capabilities = Capabilities(search_by_argument=True, shared_between_processes=False)

    def __init__(self) -> None:
        self._rows: dict[uuid.UUID, _Row] = {}
        # per queue: heap of (-priority, run_at, id, version) for waiting rows
        self._waiting: dict[str, list[tuple[int, datetime, uuid.UUID, int]]] = {}
        # per queue: heap of (lease_expires_at, id, token) for running rows
        self._leases: dict[str, list[tuple[datetime, uuid.UUID, str]]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._tokens = itertools.count(1)
        self._kv_init()
        self._workers: dict[str, WorkerInfo] = {}
        self._unique_init()

    # -- producing -----------------------------------------------------------

    def add(self, jobs: Sequence[Envelope]) -> None:
        now = utcnow()
        with self._lock:
            for env in jobs:
                if env.id in self._rows:
                    continue  # idempotent re-add
                state = JobState.SCHEDULED if env.run_at > now else JobState.READY
                row = _Row(envelope=env, state=state, updated_at=now)
                self._rows[env.id] = row
                self._push_waiting(row)
            self._wake.notify_all()

    def _state_of(self, job_id: uuid.UUID) -> JobState | None:
        row = self._rows.get(job_id)
        return row.state if row is not None else None

    def _push_waiting(self, row: _Row) -> None:
        env = row.envelope
        heap = self._waiting.setdefault(env.queue, [])
        heapq.heappush(heap, (-env.priority, env.run_at, env.id, row.version))

    # -- consuming -----------------------------------------------------------

    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        now = utcnow()
        expires = now + timedelta(seconds=lease)
        claims: list[Claim] = []
        with self._lock:
            leases = self._leases.setdefault(queue, [])
            while leases and len(claims) < limit and leases[0][0] <= now:
                _, job_id, token = heapq.heappop(leases)
                row = self._rows.get(job_id)
                if row is None or row.state is not JobState.RUNNING or row.token != token:
                    continue
                if row.lease_expires_at is not None and row.lease_expires_at > now:
                    continue  # extended since; a newer heap entry exists
                claims.append(self._lease(row, owner, expires, now, recovered=True))
            waiting = self._waiting.get(queue, [])
            while waiting and len(claims) < limit:
                _, run_at, job_id, version = waiting[0]
                row = self._rows.get(job_id)
                if row is None or row.version != version or not row.state.waiting:
                    heapq.heappop(waiting)
                    continue
                if run_at > now:
                    break
                heapq.heappop(waiting)
                claims.append(self._lease(row, owner, expires, now, recovered=False))
        return claims

    def _lease(
        self, row: _Row, owner: str, expires: datetime, now: datetime, *, recovered: bool
    ) -> Claim:
        row.version += 1
        row.envelope = msgspec.structs.replace(row.envelope, attempts=row.envelope.attempts + 1)
        row.state = JobState.RUNNING
        row.token = str(next(self._tokens))
        row.lease_owner = owner
        row.lease_expires_at = expires
        row.updated_at = now
        heapq.heappush(self._leases[row.envelope.queue], (expires, row.envelope.id, row.token))
        return Claim(
            job=row.envelope,
            token=row.token,
            owner=owner,
            lease_expires_at=expires,
            recovered=recovered,
        )

    def _owned(self, claim: Claim) -> _Row:
        row = self._rows.get(claim.job.id)
        if row is None or row.state is not JobState.RUNNING or row.token != claim.token:
            raise LeaseLost(
                f"job {claim.job.id} is no longer leased by this claim (lease expired and "
                "another worker claimed it, or it was purged); outcome not recorded"
            )
        return row

    def _finish(self, row: _Row, state: JobState, now: datetime) -> None:
        row.state = state
        row.updated_at = now
        row.finished_at = now if state in FINISHED_STATES else None
        row.lease_owner = None
        row.lease_expires_at = None
        row.token = ""
        row.version += 1

    def complete(self, claim: Claim, result: Any = None) -> None:
        now = utcnow()
        with self._lock:
            row = self._owned(claim)
            row.result = result
            self._finish(row, JobState.SUCCEEDED, now)

    def retry(self, claim: Claim, run_at: datetime, error: AttemptError) -> None:
        now = utcnow()
        with self._lock:
            row = self._owned(claim)
            row.envelope = msgspec.structs.replace(
                row.envelope, run_at=run_at, errors=(*row.envelope.errors, error)
            )
            self._finish(row, JobState.RETRYING, now)
            self._push_waiting(row)
            self._wake.notify_all()

    def fail(self, claim: Claim, error: AttemptError) -> None:
        now = utcnow()
        with self._lock:
            row = self._owned(claim)
            row.envelope = msgspec.structs.replace(
                row.envelope, errors=(*row.envelope.errors, error)
            )
            self._finish(row, JobState.FAILED, now)

    def release(self, claims: Sequence[Claim]) -> None:
        now = utcnow()
        with self._lock:
            for claim in claims:
                row = self._rows.get(claim.job.id)
                if row is None or row.state is not JobState.RUNNING or row.token != claim.token:
                    continue
                row.envelope = msgspec.structs.replace(
                    row.envelope, attempts=max(0, row.envelope.attempts - 1)
                )
                self._finish(row, JobState.READY, now)
                self._push_waiting(row)
            self._wake.notify_all()

    def extend(self, claims: Sequence[Claim], lease: float) -> set[uuid.UUID]:
        now = utcnow()
        expires = now + timedelta(seconds=lease)
        lost: set[uuid.UUID] = set()
        with self._lock:
            for claim in claims:
                row = self._rows.get(claim.job.id)
                if row is None or row.state is not JobState.RUNNING or row.token != claim.token:
                    lost.add(claim.job.id)
                    continue
                row.lease_expires_at = expires
                heapq.heappush(
                    self._leases[row.envelope.queue], (expires, row.envelope.id, row.token)
                )
        return lost

    def next_due(self, queue: str) -> datetime | None:
        with self._lock:
            times = [
                row.envelope.run_at
                for row in self._rows.values()
                if row.envelope.queue == queue and row.state.waiting
            ]
            times += [
                row.lease_expires_at
                for row in self._rows.values()
                if row.envelope.queue == queue
                and row.state is JobState.RUNNING
                and row.lease_expires_at is not None
            ]
        return min(times, default=None)

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        with self._wake:
            self._wake.wait(timeout)

    # -- management ----------------------------------------------------------

    def get(self, job_id: uuid.UUID) -> JobRecord | None:
        with self._lock:
            row = self._rows.get(job_id)
            return row.record() if row else None

    def search(self, query: JobQuery) -> Page:
        with self._lock:
            records = [row.record() for row in self._rows.values()]
        return Page.of(records, query)

    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        out: dict[str, dict[JobState, int]] = {}
        with self._lock:
            for row in self._rows.values():
                q = row.envelope.queue
                if queue is not None and q != queue:
                    continue
                per = out.setdefault(q, {})
                per[row.state] = per.get(row.state, 0) + 1
        return out

    def cancel(self, job_id: uuid.UUID) -> bool:
        now = utcnow()
        with self._lock:
            row = self._rows.get(job_id)
            if row is None or not row.state.waiting:
                return False
            self._finish(row, JobState.CANCELLED, now)
            return True

    def delete(self, job_id: uuid.UUID) -> bool:
        with self._lock:
            row = self._rows.get(job_id)
            if row is None or row.state is JobState.RUNNING:
                return False
            del self._rows[job_id]  # its heap entries find no row and are skipped
            return True

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        now = utcnow()
        with self._keys_lock, self._lock:  # the order add_unique takes them in
            row = self._rows.get(job_id)
            if row is None or not row.state.finished:
                return False
            self._take_key_back(row.envelope)
            row.envelope = msgspec.structs.replace(row.envelope, run_at=run_at or now, attempts=0)
            row.result = None
            self._finish(row, JobState.READY if (run_at or now) <= now else JobState.SCHEDULED, now)
            self._push_waiting(row)
            self._wake.notify_all()
            return True

    def purge_finished(
        self, states: tuple[JobState, ...], older_than: datetime | None, queue: str | None
    ) -> int:
        chosen = set(states)
        with self._lock:
            doomed = [
                job_id
                for job_id, row in self._rows.items()
                if row.state in chosen
                and (older_than is None or row.updated_at < older_than)
                and (queue is None or row.envelope.queue == queue)
            ]
            for job_id in doomed:
                del self._rows[job_id]
        return len(doomed)

    def finished_per_minute(self, since: datetime, queue: str | None = None) -> list[MinuteCount]:
        with self._lock:
            finished = [
                (row.finished_at, row.state is JobState.SUCCEEDED)
                for row in self._rows.values()
                if row.finished_at is not None
                and row.finished_at >= since
                and row.state in (JobState.SUCCEEDED, JobState.FAILED)
                and (queue is None or row.envelope.queue == queue)
            ]
        return per_minute(finished)

    # -- worker announcements ------------------------------------------------

    def announce(self, worker: WorkerInfo) -> None:
        with self._lock:
            self._workers[worker.id] = worker

    def withdraw(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            live = live_workers(list(self._workers.values()))
            self._workers = {w.id: w for w in live}
        return live
