"""Conformance tests for finished-jobs-per-minute counts (``oddjob_core.history.FinishedHistory``).

Subclass ``FinishedHistorySuite`` with the same ``storage_factory`` fixture as
``StorageSuite``; a backend without ``FinishedHistory`` gets visible skips.
"""

from __future__ import annotations

from datetime import timedelta

from ..clock import utcnow
from ..history import FinishedHistory, finished_history_of
from ..model import AttemptError
from ..storage import Storage
from .envelopes import make_envelope
from .suite_base import OptionalInterfaceSuite, skip_unless


class FinishedHistorySuite(OptionalInterfaceSuite):
    """Succeeded and failed jobs are counted in the minute they finished."""

    __test__ = False  # collected through subclasses only

    @staticmethod
    def require_history(storage: Storage) -> FinishedHistory:
        return skip_unless(
            finished_history_of(storage), storage, "cannot count finished jobs per minute"
        )

    def _finish(self, storage: Storage, queue: str, ok: int, bad: int) -> None:
        storage.add([make_envelope(queue) for _ in range(ok + bad)])
        claims = storage.claim(queue, ok + bad, 30.0, "history-suite")
        assert len(claims) == ok + bad
        for claim in claims[:ok]:
            storage.complete(claim, None)
        for claim in claims[ok:]:
            storage.fail(
                claim,
                AttemptError(attempt=1, type="builtins.ValueError", message="no", at=utcnow()),
            )

    def test_finished_jobs_are_counted_per_minute(self, storage: Storage) -> None:
        history = self.require_history(storage)
        before = utcnow() - timedelta(minutes=1)
        self._finish(storage, "hist", ok=3, bad=2)
        rows = history.finished_per_minute(before)
        assert sum(r.succeeded for r in rows) == 3
        assert sum(r.failed for r in rows) == 2
        for row in rows:
            assert row.minute.second == 0
            assert row.minute.microsecond == 0
            assert row.minute.utcoffset() == timedelta(0)
            assert before - timedelta(minutes=1) <= row.minute <= utcnow()
        assert [r.minute for r in rows] == sorted(r.minute for r in rows)

    def test_waiting_jobs_and_jobs_finished_before_since_do_not_count(
        self, storage: Storage
    ) -> None:
        history = self.require_history(storage)
        self._finish(storage, "hist", ok=1, bad=0)
        storage.add([make_envelope("hist")])
        assert history.finished_per_minute(utcnow() + timedelta(minutes=2)) == []

    def test_counts_can_be_limited_to_one_queue(self, storage: Storage) -> None:
        history = self.require_history(storage)
        since = utcnow() - timedelta(minutes=1)
        self._finish(storage, "hist-a", ok=2, bad=0)
        self._finish(storage, "hist-b", ok=0, bad=1)
        rows = history.finished_per_minute(since, queue="hist-a")
        assert (sum(r.succeeded for r in rows), sum(r.failed for r in rows)) == (2, 0)
