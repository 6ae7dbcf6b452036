"""Keeps leases alive while jobs wait or run, and flags jobs whose timeout passed."""

from __future__ import annotations

import logging
import threading
import time

from oddjob_core.engine import JobContext, Runtime
from oddjob_core.errors import StorageError
from oddjob_core.model import Claim

log = logging.getLogger("oddjob.worker")

TICK = 0.5  # seconds between deadline checks


class LeaseKeeper:
    """One heartbeat thread per process: renews every held lease at a third of its length."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._held: dict[object, tuple[Claim, JobContext | None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="oddjob-leases", daemon=True)
        self.lost: set[object] = set()

    def start(self) -> None:
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
        """The claim started: watch its deadline too."""
        with self._lock:
            self._held[claim.job.id] = (claim, context)

    def drop(self, claim: Claim) -> None:
        """The claim's outcome is recorded (or it was released)."""
        with self._lock:
            self._held.pop(claim.job.id, None)
            self.lost.discard(claim.job.id)

    def _loop(self) -> None:
        renew_every = self._runtime.settings.lease / 3
        last_renewal = time.monotonic()
        while not self._stop.wait(TICK):
            with self._lock:
                held = list(self._held.values())
            for _, context in held:
                if context is not None:
                    _ = context.cancelled  # sets the cancel event once the deadline passed
            if time.monotonic() - last_renewal < renew_every or not held:
                continue
            last_renewal = time.monotonic()
            try:
                lost = self._runtime.storage.extend(
                    [c for c, _ in held], self._runtime.settings.lease
                )
            except StorageError as exc:
                log.error("could not renew %d lease(s): %s", len(held), exc)
                continue
            for claim, context in held:
                if claim.job.id not in lost:
                    continue
                with self._lock:
                    current = self._held.get(claim.job.id)
                    if current is None or current[0] is not claim:
                        continue  # finished while the renewal was in flight: not a loss
                    if context is not None and context.recording:
                        continue  # its outcome write is under way; that write tells the truth
                    self.lost.add(claim.job.id)
                log.warning("lease of job %s was lost; another worker may run it", claim.job.id)
                if context is not None:
                    context.cancel_event.set()
