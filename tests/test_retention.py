"""The retention sweeper purges only finished jobs older than their retention, off-thread, once at a time."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from oddjob_core.clock import utcnow
from oddjob_core.errors import StorageError
from oddjob_core.memory.store import MemoryStorage
from oddjob_core.model import AttemptError
from oddjob_core.retention import RetentionSweeper
from oddjob_core.testing import make_envelope, wait_for


def _finished_store() -> tuple[MemoryStorage, dict[str, Any]]:
    """A store with a succeeded, a failed and a waiting job."""
    store = MemoryStorage()
    done, failed, waiting = make_envelope("r"), make_envelope("r"), make_envelope("r", delay=600)
    store.add([done, failed])
    first, second = sorted(store.claim("r", 2, 30, "w"), key=lambda c: c.job.id != done.id)
    store.complete(first)
    store.fail(second, AttemptError(attempt=1, type="ValueError", message="x", at=utcnow()))
    store.add([waiting])
    return store, {"done": done.id, "failed": failed.id, "waiting": waiting.id}


def test_sweep_purges_finished_jobs_past_their_retention_only() -> None:
    store, ids = _finished_store()
    time.sleep(0.01)
    # retention 0 days: everything finished before now is past it; failed jobs kept forever
    assert RetentionSweeper(store, 0.0, None, where="memory").sweep_now() == 1
    assert store.get(ids["done"]) is None
    assert store.get(ids["failed"]) is not None
    assert store.get(ids["waiting"]) is not None
    assert RetentionSweeper(store, None, 0.0, where="memory").sweep_now() == 1
    assert store.get(ids["failed"]) is None
    assert store.get(ids["waiting"]) is not None  # waiting jobs are never purged


def test_recent_history_is_kept() -> None:
    store, ids = _finished_store()
    assert RetentionSweeper(store, 1.0, 1.0, where="memory").sweep_now() == 0
    assert store.get(ids["done"]) is not None


def test_maybe_sweep_runs_in_the_background_when_due_and_never_twice_at_once() -> None:
    class SlowPurge(MemoryStorage):
        def __init__(self) -> None:
            super().__init__()
            self.running = 0
            self.most = 0
            self.calls = 0
            self.guard = threading.Lock()

        def purge(self, states: Any, older_than: datetime | None = None, queue: Any = None) -> int:
            with self.guard:
                self.running += 1
                self.calls += 1
                self.most = max(self.most, self.running)
            time.sleep(1.0)
            with self.guard:
                self.running -= 1
            return 0

    store = SlowPurge()
    sweeper = RetentionSweeper(store, 1.0, None, where="memory", every=0.0, first_after=0.0)
    started = time.monotonic()
    for _ in range(20):
        sweeper.maybe_sweep()  # due every time; returns at once (a sweep takes 1 s)
    assert time.monotonic() - started < 0.8
    deadline = time.monotonic() + 5
    while store.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert store.calls >= 1
    assert store.most == 1


def test_without_retention_nothing_is_ever_due() -> None:
    store, _ = _finished_store()
    sweeper = RetentionSweeper(store, None, None, where="memory", first_after=0.0)
    assert sweeper.due_at == float("inf")


def test_a_failing_sweep_is_logged_and_tried_again_later(caplog: Any) -> None:
    class Down(MemoryStorage):
        calls = 0

        def purge(self, states: Any, older_than: datetime | None = None, queue: Any = None) -> int:
            self.calls += 1
            raise StorageError("the database is down (test)")

    store = Down()
    sweeper = RetentionSweeper(store, 1.0, None, where="memory", every=0.0, first_after=0.0)
    sweeper.maybe_sweep()
    assert wait_for(lambda: "retention sweep of memory failed" in caplog.text, 10), caplog.text
    assert "the database is down (test)" in caplog.text
    assert store.calls == 1

    def tried_again() -> bool:
        sweeper.maybe_sweep()  # due again at once (every=0): runs once the failed one let go
        return store.calls >= 2

    assert wait_for(tried_again, 10), "the sweep was not tried again after it failed"
