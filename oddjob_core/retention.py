"""Retention for stores that keep finished jobs: purge what is older than its retention.

Claiming workers call ``RetentionSweeper.maybe_sweep()``; every ``every`` seconds it
purges, on a background thread, succeeded and cancelled jobs older than
``retention_days`` and failed ones older than ``failed_retention_days``. A sweep
never runs twice at once, and a failed sweep is only logged: retention must not
stop a worker from claiming.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from .clock import utcnow
from .errors import StorageError
from .model import JobState
from .storage import QueueManagement

log = logging.getLogger("oddjob.retention")


class RetentionSweeper:
    """Purges one store's expired history now and then, off the claiming thread."""

    def __init__(
        self,
        storage: QueueManagement,
        retention_days: float | None,
        failed_retention_days: float | None,
        *,
        where: str,
        every: float = 300.0,
        first_after: float = 5.0,
    ) -> None:
        self.storage = storage
        self.retention_days = retention_days
        self.failed_retention_days = failed_retention_days
        self.where = where  # for the log line: "schema 'oddjob'", "[dbo].[oddjob_jobs]"
        self.every = every
        self.due_at = time.monotonic() + first_after
        if retention_days is None and failed_retention_days is None:
            self.due_at = float("inf")  # nothing to purge, ever
        self._lock = threading.Lock()

    def maybe_sweep(self) -> None:
        """Start a sweep on a background thread when one is due (cheap when not)."""
        if self.due_at > time.monotonic():
            return
        self.due_at = time.monotonic() + self.every
        if not self._lock.acquire(blocking=False):
            return  # the previous sweep still runs
        threading.Thread(target=self._sweep, name="oddjob-retention", daemon=True).start()

    def sweep_now(self) -> int:
        """Purge expired history on this thread; how many jobs were removed."""
        now = utcnow()
        removed = 0
        if self.retention_days is not None:
            removed += self.storage.purge(
                [JobState.SUCCEEDED, JobState.CANCELLED],
                now - timedelta(days=self.retention_days),
            )
        if self.failed_retention_days is not None:
            removed += self.storage.purge(
                [JobState.FAILED], now - timedelta(days=self.failed_retention_days)
            )
        return removed

    def _sweep(self) -> None:
        try:
            removed = self.sweep_now()
            if removed:
                log.info("retention: purged %d finished job(s) from %s", removed, self.where)
        except StorageError as exc:
            log.warning("retention sweep of %s failed: %s; will try again later", self.where, exc)
        finally:
            self._lock.release()
