"""Lease renewal, the same for every executor: one heartbeat thread renews what a worker holds.

An executor ``hold``s claims as soon as it has them, marks them ``running``
with their context when a job starts and ``drop``s them once the outcome is
recorded (or the claim given back). The keeper renews every held lease at a
third of its length, checks running jobs' deadlines on every tick (cancelling
a job past its timeout), and when storage reports a lease lost it marks the
claim lost (``is_lost``) and the running job's context lost and cancelled, so
its outcome is counted as lost rather than written.

A claim this process knows it lost is never started (a certain duplicate):
``is_lost`` is also true when the lease ran out while the job waited (the
process was SIGSTOPped or starved past its lease: the keeper tracks, per claim,
the monotonic time by which its lease surely ended) and, on stores whose leases
are deliveries (no ``lease_expiry``, e.g. RabbitMQ, where ``extend`` costs no
round trip), when ``extend`` says the delivery is gone. These and refused
outcomes are logged by ``oddjob.fencing``, which ``worker -v`` keeps.
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
fencing = logging.getLogger("oddjob.fencing")

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
        # per claim token (this process may hold a newer claim of the same job): the
        # monotonic time by which its lease has surely run out (claim or renewal + lease)
        self._deadline: dict[str, float] = {}

    def start(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def hold(self, claims: list[Claim], claimed_at: float | None = None) -> None:
        """Start renewing these claims (claimed, not yet started).

        ``claimed_at``: ``time.monotonic()`` taken before the claim was asked for;
        the lease surely ends ``lease`` seconds after it.
        """
        deadline = (time.monotonic() if claimed_at is None else claimed_at) + self._lease
        with self._lock:
            for claim in claims:
                self._held[claim.job.id] = (claim, None)
                self._deadline[claim.token] = deadline

    def running(self, claim: Claim, context: JobContext) -> None:
        """The claim started: watch its deadline too, and tell its context if the lease is lost."""
        with self._lock:
            self._held[claim.job.id] = (claim, context)

    def drop(self, claim: Claim) -> None:
        """The claim's outcome is recorded (or it was released): stop renewing it."""
        with self._lock:
            self._deadline.pop(claim.token, None)
            held = self._held.get(claim.job.id)
            if held is not None and held[0].token != claim.token:
                return  # a newer claim of the same job is held: keep renewing that one
            self._held.pop(claim.job.id, None)
            self.lost.discard(claim.job.id)

    def is_lost(self, claim: Claim) -> bool:
        """True when this process knows the claim is no longer its own (do not start it)."""
        job_id = claim.job.id
        if job_id in self.lost:
            return True
        if self._storage.capabilities.lease_expiry:
            with self._lock:
                deadline = self._deadline.get(claim.token)
            if deadline is not None and time.monotonic() >= deadline:
                fencing.warning(
                    "job %s: its lease ran out before it started (was this process stopped or "
                    "starved?); not starting it, another worker may run it",
                    job_id,
                )
                return True
            return False
        try:
            gone = job_id in self._storage.extend([claim], self._lease)
        except StorageError:
            return False  # cannot tell: the outcome write will
        if gone:
            fencing.warning(
                "job %s: its delivery was lost (connection or channel closed); not starting it",
                job_id,
            )
        return gone

    def renew_now(self) -> None:
        """Renew every held lease at once (the heartbeat thread calls it on schedule)."""
        with self._lock:
            held = list(self._held.values())
        if not held:
            return
        renewing = time.monotonic()
        try:
            lost = self._storage.extend([c for c, _ in held], self._lease)
        except StorageError as exc:
            log.error("could not renew %d lease(s): %s", len(held), exc)
            return
        with self._lock:
            for claim, _ in held:
                deadline = self._deadline.get(claim.token)
                # once run out, a lease stays lost here: the job may have been claimed anew
                if claim.job.id not in lost and deadline is not None and renewing < deadline:
                    self._deadline[claim.token] = renewing + self._lease
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
