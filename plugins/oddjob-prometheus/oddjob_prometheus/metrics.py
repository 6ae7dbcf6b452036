"""The metric families oddjob workers export, and the label rules that keep them bounded.

Labels are queue, outcome and target, where target is a function the worker
trusts (registered or under a trusted prefix): a stored job naming anything
else counts as ``other``, so bad data cannot mint new time series.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# seconds: jobs run from milliseconds to an hour
BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
)
OUTCOMES = ("succeeded", "retrying", "failed", "target_missing", "lease_lost")
OTHER_TARGET = "other"


class JobMetrics:
    """Every worker-side metric; labelled children are cached so the hot path is a dict lookup."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.finished = Counter(
            "oddjob_jobs_finished",
            "Attempts finished, by queue, target and outcome "
            "(succeeded, retrying, failed, target_missing, lease_lost).",
            ["queue", "target", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "oddjob_attempt_duration_seconds",
            "How long attempts ran (every outcome), by queue.",
            ["queue"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.start_lag = Histogram(
            "oddjob_start_lag_seconds",
            "Delay between a job becoming due (run_at) and its attempt starting, by queue.",
            ["queue"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "oddjob_jobs_in_flight",
            "Attempts running right now, by queue.",
            ["queue"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.saturated = Counter(
            "oddjob_queue_saturated",
            "Times a queue's coordinator stopped claiming because its workers could not keep up.",
            ["queue"],
            registry=registry,
        )
        self.trusts: Callable[[str], bool] = lambda target: False
        self._finished: dict[tuple[str, str, str], Counter] = {}
        self._by_queue: dict[str, tuple[Histogram, Histogram, Gauge]] = {}

    def target_label(self, target: str) -> str:
        """The target itself if this worker trusts it, else ``other`` (bounded cardinality)."""
        return target if self.trusts(target) else OTHER_TARGET

    def count(self, queue: str, target: str, outcome: str) -> None:
        """One finished attempt."""
        key = (queue, target, outcome)
        child = self._finished.get(key)
        if child is None:
            label = OTHER_TARGET if outcome == "target_missing" else self.target_label(target)
            child = self._finished[key] = self.finished.labels(queue, label, outcome)
        child.inc()

    def for_queue(self, queue: str) -> tuple[Histogram, Histogram, Gauge]:
        """The (duration, start lag, in flight) children of one queue."""
        children = self._by_queue.get(queue)
        if children is None:
            children = self._by_queue[queue] = (
                self.duration.labels(queue),
                self.start_lag.labels(queue),
                self.in_flight.labels(queue),
            )
        return children
