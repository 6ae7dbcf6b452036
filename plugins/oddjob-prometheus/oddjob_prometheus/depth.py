"""Queue depth by state, read from storage at scrape time and cached.

A scrape costs at most one ``counts()`` call per ``cache_seconds``, however
often Prometheus (or several of them) scrape; a failing call is logged and the
last good answer is served, so a storage outage does not break the endpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from oddjob_core.model import JobState
from oddjob_core.storage import Storage, queue_management_of

log = logging.getLogger("oddjob.prometheus")
Counts = dict[str, dict[JobState, int]]


class QueueDepth(Collector):
    """``oddjob_queue_depth{queue, state}`` from a ``counts()`` callable."""

    def __init__(self, counts: Callable[[], Counts], cache_seconds: float = 5.0) -> None:
        self._counts = counts
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._value: Counts = {}
        self._read_at: float | None = None
        self.calls = 0  # storage calls made, for tests and curiosity

    def current(self) -> Counts:
        """The cached counts, refreshed when older than ``cache_seconds``."""
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self._cache_seconds:
                self._read_at = now
                self.calls += 1
                try:
                    self._value = self._counts()
                except Exception as exc:
                    log.warning("queue depth not refreshed (counts() failed: %s)", exc)
            return self._value

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "oddjob_queue_depth",
            "Jobs per queue and state, as storage counts them (cached for a few seconds).",
            labels=["queue", "state"],
        )
        for queue, states in sorted(self.current().items()):
            for state, n in sorted(states.items()):
                family.add_metric([queue, JobState(state).value], n)
        yield family


def depth_of(storage: Storage, cache_seconds: float) -> QueueDepth | None:
    """A depth collector over ``storage``, or None (logged) if it cannot count its jobs."""
    management = queue_management_of(storage)
    if management is None:
        log.info("storage '%s' cannot count jobs: no oddjob_queue_depth metric", storage.name)
        return None
    return QueueDepth(management.counts, cache_seconds)
