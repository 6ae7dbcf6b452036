"""Workers announce themselves: an optional storage interface for who is running what, where.

A worker process writes a ``WorkerInfo`` when it starts and again on every
heartbeat; each announcement is valid until its ``expires_at``, so a worker
that dies silently drops out of ``workers()`` by itself. The dashboard and
``oddjob doctor`` read it. A backend that can store announcements implements
``WorkerRegistry`` beside ``Storage`` (``class MyStorage(Storage, WorkerRegistry)``);
callers find it with ``worker_registry_of(storage)``.
"""

from __future__ import annotations

import abc
from datetime import datetime

import msgspec

from .clock import utcnow


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One live worker process as it last announced itself.

    ``id`` is the owner name its claims carry (``Claim.owner``), so a running
    job's ``lease_owner`` names the worker that runs it. ``queues`` maps each
    queue it runs to its number of parallel workers; ``in_flight`` counts the
    jobs it has claimed and not yet finished.
    """

    id: str
    host: str
    pid: int
    queues: dict[str, int]
    in_flight: int
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    executor: str = ""

    def alive(self, now: datetime | None = None) -> bool:
        """True while the announcement has not expired."""
        return self.expires_at > (now or utcnow())


class WorkerRegistry(abc.ABC):
    """Storage of worker announcements (optional: a backend implements it when it can)."""

    @abc.abstractmethod
    def announce(self, worker: WorkerInfo) -> None:
        """Store or replace the announcement of ``worker.id`` (one round trip)."""

    @abc.abstractmethod
    def withdraw(self, worker_id: str) -> None:
        """Remove a worker's announcement (it stopped cleanly); unknown ids are ignored."""

    @abc.abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """Every announcement that has not expired, ordered by host, then pid.

        A backend may delete expired announcements while it answers.
        """


def worker_registry_of(storage: object) -> WorkerRegistry | None:
    """``storage`` as a ``WorkerRegistry``, or None if it cannot store announcements."""
    return storage if isinstance(storage, WorkerRegistry) else None


def live_workers(workers: list[WorkerInfo], now: datetime | None = None) -> list[WorkerInfo]:
    """The unexpired announcements of ``workers``, ordered by host, then pid (for backends)."""
    now = now or utcnow()
    return sorted((w for w in workers if w.alive(now)), key=lambda w: (w.host, w.pid, w.id))
