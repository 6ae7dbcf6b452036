"""The metric families oddjob workers export, and the label rules that keep them bounded.

Labels are queue, outcome and target, where target is a function the worker
trusts (registered or under a trusted prefix): a stored job naming anything
else counts as ``other``, so bad data cannot mint new time series.

Recording sits on every job's path, so it is a few dict and list updates under
one lock (``Tally``), turned into metric families only when scraped
(``TallyCollector``). In prometheus-client's multiprocess mode the samples must
go through its own metric objects (they write to shared files): ``ClientSink``.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from oddjob_core.engine.runner import Attempted, Failure, Outcome

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
CACHED = 10_000  # label cache entries at most: stored jobs may name any number of targets
_FAILED, _SUCCEEDED = Outcome.FAILED, Outcome.SUCCEEDED
_NONE: dict[str, Cell] = {}  # never written: the lookup of a queue not seen yet
Sample = tuple[str, str, str, float, float]  # queue, target label, outcome, duration, start lag

FINISHED = ("oddjob_jobs_finished", "Attempts finished, by queue, target and outcome "
            "(succeeded, retrying, failed, target_missing, lease_lost).")  # fmt: skip
DURATION = ("oddjob_attempt_duration_seconds", "How long attempts ran (every outcome), by queue.")
START_LAG = ("oddjob_start_lag_seconds",
             "Delay between a job becoming due (run_at) and its attempt starting, by queue.")  # fmt: skip
IN_FLIGHT = ("oddjob_jobs_in_flight", "Attempts running right now, by queue.")
SATURATED = ("oddjob_queue_saturated",
             "Times a queue's coordinator stopped claiming because its workers could not keep up.")  # fmt: skip


class _Histogram:
    """Bucket counts (not cumulative; the last is +Inf) and sum of one queue's samples."""

    __slots__ = ("buckets", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(BUCKETS, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), self.buckets, strict=True):
            total += n
            out.append((bound, float(total)))
        return out


class Cell:
    """One (queue, target label, outcome) counter beside its queue's histograms.

    What one recorded attempt updates: found by one dict lookup, so the hot path
    never builds labels.
    """

    __slots__ = ("duration", "n", "start_lag")

    def __init__(self, duration: _Histogram, start_lag: _Histogram) -> None:
        self.n = 0
        self.duration = duration
        self.start_lag = start_lag


class Tally:
    """This process's running totals: what the hot path updates, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.finished: dict[tuple[str, str, str], Cell] = {}
        self.duration: dict[str, _Histogram] = {}
        self.start_lag: dict[str, _Histogram] = {}
        self.saturated: dict[str, int] = {}

    def cell(self, queue: str, target: str, outcome: str) -> Cell:
        """The counter of (queue, target label, outcome), made on first use; hold ``lock``."""
        key = (queue, target, outcome)
        found = self.finished.get(key)
        if found is None:
            duration = self.duration.get(queue)
            if duration is None:
                duration = self.duration[queue] = _Histogram()
            start_lag = self.start_lag.get(queue)
            if start_lag is None:
                start_lag = self.start_lag[queue] = _Histogram()
            found = self.finished[key] = Cell(duration, start_lag)
        return found

    def finished_batch(self, items: Iterable[Sample]) -> None:
        """Count recorded attempts; a duration below 0 means it never started (no timing)."""
        with self.lock:
            for queue, target, outcome, duration, lag in items:
                cell = self.cell(queue, target, outcome)
                cell.n += 1
                if duration >= 0:
                    cell.duration.observe(duration)
                    cell.start_lag.observe(lag)

    def saturation(self, queue: str) -> None:
        with self.lock:
            self.saturated[queue] = self.saturated.get(queue, 0) + 1


class TallyCollector(Collector):
    """Metric families from a ``Tally`` (and the executor's in-flight counts), built at scrape time."""

    def __init__(self, tally: Tally, in_flight: Callable[[], dict[str, int]]) -> None:
        self.tally = tally
        self.in_flight = in_flight

    def collect(self) -> Iterator[Metric]:
        t = self.tally
        with t.lock:
            finished = {labels: cell.n for labels, cell in t.finished.items()}
            histograms = [
                (name, {q: (h.cumulative(), h.sum) for q, h in hs.items()})
                for name, hs in ((DURATION, t.duration), (START_LAG, t.start_lag))
            ]
            saturated = dict(t.saturated)
        counter = CounterMetricFamily(*FINISHED, labels=["queue", "target", "outcome"])
        for labels, n in sorted(finished.items()):
            counter.add_metric(list(labels), n)
        yield counter
        for (name, doc), per_queue in histograms:
            family = HistogramMetricFamily(name, doc, labels=["queue"])
            for queue, (buckets, total) in sorted(per_queue.items()):
                family.add_metric([queue], buckets, total)
            yield family
        gauge = GaugeMetricFamily(*IN_FLIGHT, labels=["queue"])
        for queue, n in sorted(self.in_flight().items()):
            gauge.add_metric([queue], n)
        yield gauge
        saturation = CounterMetricFamily(*SATURATED, labels=["queue"])
        for queue, n in sorted(saturated.items()):
            saturation.add_metric([queue], n)
        yield saturation


class ClientSink:
    """The same samples through prometheus-client's metric objects (multiprocess mode)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        labels = ["queue", "target", "outcome"]
        self.finished = Counter(*FINISHED, labels, registry=registry)
        self.duration = Histogram(*DURATION, ["queue"], buckets=BUCKETS, registry=registry)
        self.start_lag = Histogram(*START_LAG, ["queue"], buckets=BUCKETS, registry=registry)
        self.in_flight = Gauge(
            *IN_FLIGHT, ["queue"], multiprocess_mode="livesum", registry=registry
        )
        self.saturated = Counter(*SATURATED, ["queue"], registry=registry)

    def finished_batch(self, items: Iterable[Sample]) -> None:
        for queue, target, outcome, duration, lag in items:
            self.finished.labels(queue, target, outcome).inc()
            if duration >= 0:
                self.duration.labels(queue).observe(duration)
                self.start_lag.labels(queue).observe(lag)

    def saturation(self, queue: str) -> None:
        self.saturated.labels(queue).inc()

    def mirror_in_flight(self, in_flight: Callable[[], dict[str, int]], every: float = 1.0) -> None:
        """Copy the executor's per-queue counts into the shared gauge every ``every`` seconds."""

        def loop() -> None:
            while True:
                for queue, n in in_flight().items():
                    self.in_flight.labels(queue).set(n)
                time.sleep(every)

        threading.Thread(target=loop, name="oddjob-prometheus-in-flight", daemon=True).start()


class JobMetrics:
    """Every worker-side metric of this process, and where its samples go."""

    def __init__(
        self, registry: CollectorRegistry | None = REGISTRY, *, multiprocess: bool | None = None
    ) -> None:
        if multiprocess is None:
            multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.sink: Tally | ClientSink
        self.in_flight: Callable[[], dict[str, int]] = dict  # the executor's, once a worker starts
        if multiprocess:
            self.sink = ClientSink(registry)
        else:
            self.sink = Tally()
            if registry is not None:
                registry.register(TallyCollector(self.sink, lambda: self.in_flight()))
        self._trusts: Callable[[str], bool] = lambda target: False
        self._labels: dict[tuple[str, str], str] = {}
        self._cells: dict[str, dict[str, dict[str, Cell]]] = {}  # outcome, queue, target
        self._cached = 0
        self._forget()

    @property
    def trusts(self) -> Callable[[str], bool]:
        """Whether this worker trusts a target (set when a worker starts); others are ``other``."""
        return self._trusts

    @trusts.setter
    def trusts(self, trusts: Callable[[str], bool]) -> None:
        self._trusts = trusts
        self._forget()  # labels made under the old rule

    def _forget(self) -> None:
        self._labels = {}
        self._cells = {name: {} for name in OUTCOMES}
        self._cached = 0

    def target_label(self, target: str, outcome: str) -> str:
        """The target itself if this worker trusts it, else ``other`` (bounded cardinality)."""
        key = (target, outcome)
        label = self._labels.get(key)
        if label is None:
            trusted = outcome != "target_missing" and self._trusts(target)
            label = target if trusted else OTHER_TARGET
            if len(self._labels) < CACHED:
                self._labels[key] = label
        return label

    def record(self, attempts: Sequence[Attempted], outcomes: Sequence[Outcome]) -> None:
        """Count recorded attempts, observe their durations and start lags: once per batch.

        The hot path of every job, so it allocates nothing per job: the job's
        counter and its queue's histograms are found by outcome (identity, an
        Enum's hash is a Python call), then queue and target (strings, hashes
        cached); labels are built once per kind of job, not per job.
        """
        sink = self.sink
        if not isinstance(sink, Tally):  # multiprocess mode: through prometheus-client
            sink.finished_batch(self._samples(attempts, outcomes))
            return
        succeeded, bounds, bucket, first = (
            self._cells["succeeded"],
            BUCKETS,
            bisect_left,
            BUCKETS[0],
        )
        with sink.lock:
            for attempt, outcome in zip(attempts, outcomes, strict=True):
                job = attempt.claim.job
                if outcome is _SUCCEEDED:
                    name, table = "succeeded", succeeded
                else:
                    name = _outcome_name(attempt, outcome)
                    table = self._cells[name]
                cell = table.get(job.queue, _NONE).get(job.target)
                if cell is None:
                    cell = sink.cell(job.queue, self.target_label(job.target, name), name)
                    if self._cached < CACHED:
                        table.setdefault(job.queue, {})[job.target] = cell
                        self._cached += 1
                cell.n += 1
                started = attempt.started_at
                if started:  # 0: it never started, no timing
                    duration = attempt.duration
                    histogram = cell.duration
                    histogram.buckets[0 if duration <= first else bucket(bounds, duration)] += 1
                    histogram.sum += duration
                    lag = started - job.run_at.timestamp()
                    if lag < 0.0:
                        lag = 0.0
                    histogram = cell.start_lag
                    histogram.buckets[0 if lag <= first else bucket(bounds, lag)] += 1
                    histogram.sum += lag

    def _samples(self, attempts: Sequence[Attempted], outcomes: Sequence[Outcome]) -> list[Sample]:
        items = []
        for attempt, outcome in zip(attempts, outcomes, strict=True):
            job = attempt.claim.job
            name = _outcome_name(attempt, outcome)
            if attempt.started_at:
                lag = max(0.0, attempt.started_at - job.run_at.timestamp())
                duration = attempt.duration
            else:
                lag = duration = -1.0  # it never started
            items.append((job.queue, self.target_label(job.target, name), name, duration, lag))
        return items

    def count(self, queue: str, target: str, outcome: str) -> None:
        """One finished attempt that never started (no timing)."""
        self.sink.finished_batch([(queue, self.target_label(target, outcome), outcome, -1.0, -1.0)])

    def watch(self, in_flight: Callable[[], dict[str, int]]) -> None:
        """Read in-flight counts from ``in_flight`` (an executor's ``in_flight_by_queue``)."""
        self.in_flight = in_flight
        if isinstance(self.sink, ClientSink):
            self.sink.mirror_in_flight(in_flight)


def _outcome_name(attempt: Attempted, outcome: Outcome) -> str:
    """The ``outcome`` label of a recorded attempt."""
    if outcome is Outcome.LOST:
        return "lease_lost"
    if outcome is _FAILED and isinstance(attempt, Failure) and attempt.missing:
        return "target_missing"
    return str(outcome.value)
