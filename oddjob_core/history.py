"""Finished jobs per minute: an optional storage interface for throughput charts.

A backend that can count its succeeded and failed jobs by ``finished_at``
implements ``FinishedHistory`` beside ``Storage``; callers find it with
``finished_history_of(storage)``. Purged jobs no longer count.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from datetime import datetime

import msgspec


class MinuteCount(msgspec.Struct, frozen=True):
    """Jobs that finished within the minute starting at ``minute`` (UTC)."""

    minute: datetime
    succeeded: int
    failed: int


class FinishedHistory(abc.ABC):
    """Counting finished jobs per minute (optional: a backend implements it when it can)."""

    @abc.abstractmethod
    def finished_per_minute(self, since: datetime, queue: str | None = None) -> list[MinuteCount]:
        """Succeeded and failed jobs per minute of ``finished_at`` at or after ``since``.

        Oldest minute first; minutes without a finished job are left out.
        """


def finished_history_of(storage: object) -> FinishedHistory | None:
    """``storage`` as a ``FinishedHistory``, or None if it cannot count finished jobs by time."""
    return storage if isinstance(storage, FinishedHistory) else None


def per_minute(finished: Iterable[tuple[datetime, bool]]) -> list[MinuteCount]:
    """Bucket ``(finished_at, succeeded?)`` pairs by minute (for backends that scan)."""
    buckets: dict[datetime, list[int]] = {}
    for at, ok in finished:
        counts = buckets.setdefault(at.replace(second=0, microsecond=0), [0, 0])
        counts[0 if ok else 1] += 1
    return [MinuteCount(m, ok, bad) for m, (ok, bad) in sorted(buckets.items())]
