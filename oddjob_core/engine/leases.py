"""Lease renewal, the same for every executor: one heartbeat thread renews what a worker holds.

An executor ``hold``s claims as soon as it has them, marks them ``running``
with their context when a job starts and ``drop``s them once the outcome is
recorded (or the claim given back). The keeper renews every held lease at a
third of its length, checks running jobs' deadlines on every tick (cancelling
a job past its timeout), and when storage reports a lease lost it marks the
claim lost (``is_lost``) and the running job's context lost and cancelled, so
its outcome is counted as lost rather than written.
"""

from __future__ import annotations

import logging
import threading
import time

from ..errors import StorageError
from ..model import Claim
from ..storage import Storage
from .context import JobContext

log = logging.getLogger("oddjob.worker")

TICK = 0.5  # seconds between deadline checks (shorter for short leases)


class LeaseKeeper:
    """One heartbeat thread per executor: renews every held lease at a third of its length."""

    def __init__(self, storage: Storage, lease: float) -> None:
        self._storage = storage
        self._lease = lease
        self._renew_every = lease / 3
        self._tick = min(TICK, lease / 6)
        self._held: dict[object, tuple[Claim, JobContext | None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="oddjob-leases", daemon=True)
        self.lost: set[object] = set()

    def start(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def hold(self, claims: list[Claim]) -> None:
        """Start renewing these claims (claimed, not yet started)."""
        with self._lock:
            for claim in claims:
                self._held[claim.job.id] = (claim, None)

    def running(self, claim: Claim, context: JobContext) -> None:
        """The claim started: watch its deadline too, and tell its context if the lease is lost."""
        with self._lock:
            self._held[claim.job.id] = (claim, context)

    def drop(self, claim: Claim) -> None:
        """The claim's outcome is recorded (or it was released): stop renewing it."""
        with self._lock:
            self._held.pop(claim.job.id, None)
            self.lost.discard(claim.job.id)

    def is_lost(self, claim: Claim) -> bool:
        """True once storage reported this claim's lease lost (do not start it)."""
        return claim.job.id in self.lost

    def renew_now(self) -> None:
        """Renew every held lease at once (the heartbeat thread calls it on schedule)."""
        with self._lock:
            held = list(self._held.values())
        if not held:
            return
        try:
            lost = self._storage.extend([c for c, _ in held], self._lease)
        except StorageError as exc:
            log.error("could not renew %d lease(s): %s", len(held), exc)
            return
        for claim, context in held:
            if claim.job.id not in lost:
                continue
            with self._lock:
                current = self._held.get(claim.job.id)
                if current is None or current[0] is not claim:
                    continue  # finished while the renewal was in flight: not a loss
                context = current[1]
                if context is not None and context.recording:
                    continue  # its outcome write is under way; that write tells the truth
                self.lost.add(claim.job.id)
            log.warning("lease of job %s was lost; another worker may run it", claim.job.id)
            if context is not None:
                context.lose_lease()

    def _loop(self) -> None:
        last_renewal = time.monotonic()
        while not self._stop.wait(self._tick):
            with self._lock:
                contexts = [context for _, context in self._held.values() if context is not None]
            for context in contexts:
                context.check_deadline()
            if time.monotonic() - last_renewal < self._renew_every:
                continue
            last_renewal = time.monotonic()
            self.renew_now()
