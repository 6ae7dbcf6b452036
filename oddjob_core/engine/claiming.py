"""What every executor's claim loop shares: backpressure, failed claims, the idle wait, giving back.

An executor runs a claim loop per queue (a thread, or a task on an event loop)
and keeps its own counts of jobs claimed and waiting for a worker (pending),
running, and finished but not yet written (recording). The rules on those
counts are the same for every executor and live here, so threads, processes
and asyncio cannot drift apart:

- no claim while ``pending >= 2 × workers`` (the ``queue_saturated`` hook is
  called once per such stall) or ``recording >= 4 × workers``; a claim never
  queues more than ``3 × workers - 1`` (nor more than the queue's ``batch_size``);
- a failed claim is retried after a capped backoff; a burst run gives up after
  ``BURST_GIVE_UP`` failures in a row (a full disk must not hang a cron job);
- nothing due: wait for work until the next due job or ``poll_interval``; a burst
  run ends when the queue is idle and nothing is due within ``burst_wait``;
- on stop, claims no worker started are given back (``storage.release``).

Storage calls here are synchronous: an event loop runs them on a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..clock import utcnow
from ..errors import StorageError
from ..model import Claim
from .burst import BurstClock
from .leases import LeaseKeeper
from .runtime import Runtime

log = logging.getLogger("oddjob.worker")
CLAIM_RETRY_CAP = 5.0  # seconds between claims while the store fails (was 30: slow recovery)
BURST_GIVE_UP = 5  # consecutive failed claims after which a burst run stops (a full disk...)


@dataclass(frozen=True)
class Backpressure:
    """How many jobs a queue with ``workers`` workers may hold claimed, by stage."""

    workers: int
    capacity: int  # pending jobs at which claiming pauses
    ceiling: int  # pending jobs a claim may fill up to
    recording_bound: int  # finished jobs waiting for their write at which claiming pauses
    batch_size: int  # most jobs one claim asks for

    @classmethod
    def of(cls, workers: int, batch_size: int | None = None) -> Backpressure:
        ceiling = 3 * workers - 1
        return cls(workers, 2 * workers, ceiling, 4 * workers, batch_size or ceiling)

    def paused(self, pending: int, recording: int) -> bool:
        """Claiming waits: enough claimed jobs wait for a worker, or for their write."""
        return pending >= self.capacity or recording >= self.recording_bound

    def saturated(self, pending: int) -> bool:
        return pending >= self.capacity

    def limit(self, pending: int) -> int:
        """How many jobs the next claim asks for."""
        return min(self.ceiling - pending, self.batch_size)


class ClaimLoop:
    """The claim loop's decisions for queue ``name``; the executor's loop does the waiting.

    ``gave_up`` is set when a burst run stopped because claiming kept failing.
    """

    def __init__(
        self,
        name: str,
        workers: int,
        runtime: Runtime,
        leases: LeaseKeeper,
        *,
        burst: bool,
        burst_wait: float,
    ) -> None:
        self.name = name
        self.runtime = runtime
        self.leases = leases
        self.burst = burst
        self.backpressure = Backpressure.of(workers, runtime.settings.queue(name).batch_size)
        self.gave_up: Exception | None = None
        self._clock = BurstClock(burst_wait)
        self._failures = 0
        self._saturated = False

    def claim(self, pending: int) -> list[Claim]:
        """Claim what fits beside ``pending`` jobs and renew their leases from now on.

        Raises what the store raises: pass it to ``failed``.
        """
        runtime = self.runtime
        limit = self.backpressure.limit(pending)
        claimed_at = time.monotonic()
        claims = runtime.storage.claim(self.name, limit, runtime.settings.lease, runtime.owner)
        self._failures = 0
        if claims:
            self._clock.busy()
            self.leases.hold(claims, claimed_at)
        return claims

    def failed(self, exc: Exception) -> float | None:
        """A claim failed: seconds to wait before the next, or None when the burst run gives up."""
        self._failures += 1
        if self.burst and self._failures >= BURST_GIVE_UP:
            log.error(
                "claiming from queue '%s' failed %d times in a row (%s); the burst run gives up",
                self.name,
                self._failures,
                exc,
            )
            self.gave_up = exc
            return None
        # capped low: jobs may be waiting, and the store may be back any moment
        wait = min(CLAIM_RETRY_CAP, 0.5 * float(2 ** min(self._failures, 6)))
        log.error("claiming from queue '%s' failed: %s; retrying in %.1f s", self.name, exc, wait)
        return wait

    def paused(self, pending: int, recording: int) -> bool:
        """Claiming must wait; the first wait of a stall on ``pending`` calls the hook."""
        backpressure = self.backpressure
        if not backpressure.paused(pending, recording):
            return False
        if not self._saturated and backpressure.saturated(pending):
            self._saturated = True
            self.runtime.hooks.queue_saturated(self.name, pending, backpressure.workers)
        return True

    def resumed(self) -> None:
        """Claiming goes on: the next stall calls the hook again."""
        self._saturated = False

    def idle_wait(self, idle: bool, stopping: threading.Event) -> bool:
        """Nothing was due: sleep until work may be due. True when a burst run is done.

        ``idle``: nothing claimed is unfinished, read *before* this call, so a
        retry recorded meanwhile is seen by ``next_due``.
        """
        storage, settings = self.runtime.storage, self.runtime.settings
        try:
            next_due = storage.next_due(self.name)
        except Exception as exc:
            log.warning("could not ask queue '%s' for its next due job: %s", self.name, exc)
            next_due = None
        now = utcnow()
        if self.burst and self._clock.done(idle, next_due, now):
            return True
        timeout = settings.poll_interval
        if next_due is not None:
            timeout = min(timeout, max(0.005, (next_due - now).total_seconds()))
        if self.burst:
            timeout = min(timeout, 0.05)  # re-check quickly: the last jobs may just have finished
        try:
            storage.wait_for_work([self.name], timeout)
        except Exception as exc:
            log.warning("waiting for work on queue '%s' failed: %s", self.name, exc)
            stopping.wait(timeout)
        return False

    def give_back(self, unstarted: Sequence[Claim]) -> None:
        """Release the claims no worker started (they run again at once, elsewhere or later)."""
        if not unstarted:
            return
        try:
            self.runtime.storage.release(list(unstarted))
            log.info("gave back %d unstarted job(s) of queue '%s'", len(unstarted), self.name)
        except StorageError as exc:
            log.error(
                "could not give back %d job(s): %s; they run again after their lease",
                len(unstarted),
                exc,
            )
        for claim in unstarted:
            self.leases.drop(claim)
