"""Keep the overview fast on big stores: counts served from a snapshot refreshed in the background.

Counting a million jobs per state takes PostgreSQL a few hundred milliseconds;
a page should not wait for that on every refresh. ``Snapshot`` computes once,
then serves the last value and recomputes in a background thread once it is
older than its time to live (stale-while-revalidate): a page shows counts at
most one refresh period old, and never waits except for the very first render.
``MinuteHistory`` keeps finished-per-minute counts and asks the store only for
the last few minutes on each refresh: past minutes do not change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from oddjob_core.clock import utcnow
from oddjob_core.history import FinishedHistory, MinuteCount

log = logging.getLogger("oddjob.dashboard")

T = TypeVar("T")
RECHECK = timedelta(minutes=2)  # minutes re-read on each refresh: late writers, clock skew


class Snapshot(Generic[T]):
    """The last value of ``compute``, recomputed in the background once older than ``ttl`` s."""

    def __init__(self, compute: Callable[[], T], ttl: float) -> None:
        self.compute = compute
        self.ttl = ttl
        self._value: tuple[T, float] | None = None
        self._lock = threading.Lock()  # one computation at a time
        self._refreshing = False

    def get(self) -> tuple[T, float]:
        """``(value, computed_at)`` with ``computed_at`` from ``time.time()``."""
        current = self._value
        if current is None or self.ttl <= 0:
            with self._lock:
                if self._value is None or self.ttl <= 0:
                    self._value = (self.compute(), time.time())
                return self._value
        if time.time() - current[1] > self.ttl and not self._refreshing:
            self._refreshing = True
            threading.Thread(
                target=self._refresh, name="oddjob-dashboard-refresh", daemon=True
            ).start()
        return current

    def _refresh(self) -> None:
        try:
            with self._lock:
                self._value = (self.compute(), time.time())
        except Exception:  # a background refresh must not die silently nor kill anything
            log.exception("refreshing the dashboard's snapshot failed; the old one stays")
        finally:
            self._refreshing = False


class MinuteHistory:
    """Finished jobs per minute over the last ``keep``, fetched incrementally."""

    def __init__(self, history: FinishedHistory, keep: timedelta = timedelta(days=1)) -> None:
        self.history = history
        self.keep = keep
        self._minutes: dict[datetime, MinuteCount] = {}
        self._until: datetime | None = None  # minutes before this are final in _minutes

    def __call__(self) -> dict[datetime, MinuteCount]:
        now = utcnow()
        start = now - self.keep
        since = start if self._until is None else max(start, self._until - RECHECK)
        since = since.replace(second=0, microsecond=0)
        rows = self.history.finished_per_minute(since)
        minutes = {m: c for m, c in self._minutes.items() if start - RECHECK <= m < since}
        minutes.update((row.minute, row) for row in rows)
        self._minutes = minutes
        self._until = now.replace(second=0, microsecond=0)
        return dict(minutes)
