"""What the pages show, read through the public management interfaces only.

Every reader returns ``Unavailable`` (with the reason) instead of raising when
the backend lacks a capability, so a page says what it cannot show.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from oddjob_core import Oddjob
from oddjob_core.clock import utcnow
from oddjob_core.errors import OddjobError, StorageError, UnsupportedOperation
from oddjob_core.history import MinuteCount
from oddjob_core.model import JobRecord, JobState
from oddjob_core.worker_registry import WorkerInfo, worker_registry_of

from .chart import Bucket
from .redact import redact_options

T = TypeVar("T")
STATES = list(JobState)


@dataclass(frozen=True)
class Unavailable:
    """A part of a page the backend cannot provide, and why."""

    reason: str


def attempt(read: Callable[[], T]) -> T | Unavailable:
    """Run a storage read; a missing capability or a storage failure becomes ``Unavailable``."""
    try:
        return read()
    except UnsupportedOperation as exc:
        return Unavailable(str(exc))
    except NotImplementedError as exc:
        return Unavailable(str(exc) or "not supported by this storage backend")
    except StorageError as exc:
        return Unavailable(f"storage error: {exc}")


@dataclass
class QueueRow:
    name: str
    counts: dict[JobState, int]
    lag: timedelta | None  # age of the oldest due job; None: nothing due

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def queue_rows(
    app: Oddjob, counts: dict[str, dict[JobState, int]] | Unavailable
) -> list[QueueRow] | Unavailable:
    """Counts per queue with each queue's lag (the age of its oldest due job)."""
    if isinstance(counts, Unavailable):
        return counts
    now = utcnow()
    rows = []
    for name in sorted(counts):
        lag: timedelta | None = None
        per = counts[name]
        if any(per.get(s, 0) for s in JobState if s.waiting):
            try:
                due = app.storage.next_due(name)
            except OddjobError:
                due = None
            if due is not None and due <= now:
                lag = now - due
        rows.append(QueueRow(name, per, lag))
    return rows


def throughput(
    minutes: dict[datetime, MinuteCount], window: timedelta, bucket: timedelta
) -> list[Bucket]:
    """Finished jobs per ``bucket`` over the last ``window`` (empty buckets included)."""
    step = int(bucket.total_seconds())
    end = _floor(utcnow(), step) + bucket
    start = end - window
    n = int(window / bucket)
    counts = [[0, 0] for _ in range(n)]
    for minute, row in minutes.items():
        i = int((minute - start).total_seconds() // step)
        if 0 <= i < n:
            counts[i][0] += row.succeeded
            counts[i][1] += row.failed
    return [Bucket(start + i * bucket, ok, bad) for i, (ok, bad) in enumerate(counts)]


def no_history(app: Oddjob) -> Unavailable:
    return Unavailable(
        f"storage '{app.storage.name}' does not count finished jobs per minute, "
        "so no throughput chart can be drawn"
    )


def _floor(moment: datetime, step: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step, tz=moment.tzinfo)


def workers(app: Oddjob) -> list[WorkerInfo] | Unavailable:
    registry = worker_registry_of(app.storage)
    if registry is None:
        return Unavailable(
            f"storage '{app.storage.name}' cannot store worker announcements, so live "
            "workers cannot be listed"
        )
    return attempt(registry.workers)


@dataclass
class StoreInfo:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


def store_info(app: Oddjob) -> StoreInfo:
    """The storage backend's name and configured options, passwords hidden."""
    name = app.settings.storage
    options = app.settings.backends.get(name) or {}
    return StoreInfo(name, redact_options(dict(options)))


def pretty_json(value: Any) -> str:
    """Readable JSON for arguments and results (escaped by the template, never trusted)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def compact_json(value: Any) -> str:
    """One-line JSON for table cells (escaped by the template)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class Moment:
    at: datetime
    what: str
    detail: str = ""


def timeline(record: JobRecord) -> list[Moment]:
    """The job's life as far as the store remembers it, oldest first."""
    env = record.envelope
    moments = [Moment(env.created_at, "created", f"queue {env.queue}")]
    if env.run_at > env.created_at + timedelta(seconds=1):
        moments.append(Moment(env.run_at, "due (run_at)"))
    for error in env.errors:
        moments.append(
            Moment(error.at, f"attempt {error.attempt} failed", f"{error.type}: {error.message}")
        )
    if record.state is JobState.RUNNING and record.lease_expires_at:
        moments.append(
            Moment(record.updated_at, f"attempt {env.attempts} running", f"by {record.lease_owner}")
        )
    if record.finished_at is not None:
        moments.append(Moment(record.finished_at, record.state.value))
    elif record.state is not JobState.RUNNING:
        moments.append(Moment(record.updated_at, f"last change: {record.state.value}"))
    return sorted(moments, key=lambda m: m.at)
