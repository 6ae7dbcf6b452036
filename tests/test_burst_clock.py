"""When a burst run stops: nothing due within the wait, or idle past wait + grace (#19)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from oddjob_core.engine import BurstClock

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_done_when_idle_and_nothing_is_due_within_the_wait() -> None:
    clock = BurstClock(2.0)
    assert clock.done(True, None, NOW)
    assert clock.done(True, NOW + timedelta(days=3), NOW)


def test_not_done_while_jobs_run_or_one_is_due_within_the_wait() -> None:
    clock = BurstClock(2.0)
    assert not clock.done(False, None, NOW)
    assert not clock.done(True, NOW + timedelta(seconds=1), NOW)


def test_a_store_that_always_answers_soon_cannot_keep_a_burst_run_alive() -> None:
    clock = BurstClock(0.05, grace=0.05)
    soon = NOW + timedelta(seconds=0.01)  # what RabbitMQ says of another process's delayed job
    assert not clock.done(True, soon, NOW)
    deadline = time.monotonic() + 10
    while not clock.done(True, soon, NOW):
        assert time.monotonic() < deadline, "the burst run never ended"
        time.sleep(0.01)


def test_work_restarts_the_idle_stretch() -> None:
    clock = BurstClock(0.05, grace=0.05)
    soon = NOW + timedelta(seconds=0.01)
    assert not clock.done(True, soon, NOW)
    time.sleep(0.2)
    clock.busy()
    assert not clock.done(True, soon, NOW)
