"""Schedules with a controlled clock: DST, misfires, pause/resume, removal, validation, dedup ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from oddjob_core import ConfigError, EnqueueError, Oddjob
from oddjob_core.errors import UnsupportedOperation
from oddjob_core.memory.store import MemoryStorage
from oddjob_core.model import JobQuery
from oddjob_core.scheduling import Cron, Every, Scheduler, tick_id
from oddjob_core.scheduling.scheduler import write_through
from oddjob_core.scheduling.timing import parse_every
from oddjob_core.testing.targets import noop

BERLIN = ZoneInfo("Europe/Berlin")
TARGET = "oddjob_core.testing.targets:noop"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def app_with(storage: MemoryStorage, **overrides: object) -> Oddjob:
    return Oddjob(storage_instance=storage, allowed_prefixes=["oddjob_core.testing"], **overrides)


def run_ats(storage: MemoryStorage, queue: str = "default") -> list[datetime]:
    found = storage.search(JobQuery(queue=queue, limit=10_000))
    return sorted(r.envelope.run_at for r in found.jobs)


def drive(scheduler: Scheduler, clock: Clock, until: datetime, step: float = 1.0) -> None:
    while clock.now < until:
        scheduler.run_pass()
        clock.advance(step)


# -- timing ------------------------------------------------------------------------


def test_tick_ids_are_deterministic_distinct_and_time_ordered() -> None:
    t = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
    assert tick_id("a", t) == tick_id("a", t)
    assert tick_id("a", t) != tick_id("b", t)
    assert tick_id("a", t) != tick_id("a", t + timedelta(seconds=1))
    assert tick_id("a", t) < tick_id("a", t + timedelta(seconds=1))
    assert tick_id("a", t).version == 7


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1), ("15m", 900), ("1h30m", 5400), ("1d", 86400), (90, 90), ("2.5s", 2.5)],
)
def test_every_accepts_durations(text: str | int, seconds: float) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "1x", "m5", "0.5s", "-1s"])
def test_every_rejects_non_durations(text: str) -> None:
    with pytest.raises(ValueError, match="every"):
        parse_every(text)


def test_every_ticks_are_aligned_on_the_epoch() -> None:
    t = datetime(2026, 5, 1, 10, 7, 31, tzinfo=UTC)
    every = Every(900)
    assert every.next_after(t) == datetime(2026, 5, 1, 10, 15, tzinfo=UTC)
    assert every.last_before(t) == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert every.last_before(datetime(2026, 5, 1, 10, 0, tzinfo=UTC)) == datetime(
        2026, 5, 1, 9, 45, tzinfo=UTC
    )


def test_spring_forward_runs_a_missing_wall_time_at_the_next_valid_instant() -> None:
    cron = Cron("30 2 * * *", BERLIN)
    start = datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)
    ticks = [t.astimezone(BERLIN) for t in _take(cron, start, 3)]
    assert ticks[0] == datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN)  # 02:30 does not exist
    assert ticks[1] == datetime(2026, 3, 30, 2, 30, tzinfo=BERLIN)


def test_fall_back_runs_a_repeated_wall_time_once() -> None:
    cron = Cron("30 2 * * *", BERLIN)
    start = datetime(2026, 10, 24, 12, 0, tzinfo=BERLIN)
    ticks = _take(cron, start, 3)
    assert ticks[1] - ticks[0] == timedelta(hours=25)  # 02:30 CEST once, then the next day
    assert ticks[0] == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def _take(cron: Cron, start: datetime, n: int) -> list[datetime]:
    out = []
    for tick in cron.after(start):
        out.append(tick)
        if len(out) == n:
            return out
    return out


def test_a_scheduler_across_both_dst_transitions_enqueues_one_job_per_day() -> None:
    for start, tick in (
        (datetime(2026, 3, 28, 20, 0, tzinfo=BERLIN), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        (datetime(2026, 10, 24, 20, 0, tzinfo=BERLIN), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    ):
        storage = MemoryStorage()
        app = app_with(storage)
        app.schedule("nightly", noop, cron="30 2 * * *", timezone="Europe/Berlin")
        clock = Clock(start.astimezone(UTC))
        scheduler = app.schedules.scheduler(clock=clock, max_sleep=60)
        drive(scheduler, clock, clock.now + timedelta(hours=12), step=60)
        assert run_ats(storage) == [tick]  # once, at 03:00 CEST in spring, 02:30 CEST in fall


# -- misfires --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "max_catch_up", "missed_run"),
    [("latest", 100, 1), ("all", 100, 60), ("all", 5, 5), ("none", 100, 0)],
)
def test_catch_up_policies_after_an_outage(policy: str, max_catch_up: int, missed_run: int) -> None:
    storage = MemoryStorage()
    app = app_with(storage)
    app.schedule("m", noop, every="1m", catch_up=policy, max_catch_up=max_catch_up)
    now = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
    last = datetime(2026, 6, 1, 11, 0, tzinfo=UTC)  # the last tick enqueued before the outage
    write_through(storage, {"m": last})
    scheduler = app.schedules.scheduler(clock=lambda: now, lookahead=5, grace=10)
    scheduler.run_pass()
    stamps = run_ats(storage)
    missed = [t for t in stamps if t < now - timedelta(seconds=10)]
    assert len(missed) == missed_run
    if missed:
        assert missed[-1] == datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # the most recent kept


def test_a_new_schedule_catches_nothing_up() -> None:
    storage = MemoryStorage()
    app = app_with(storage)
    app.schedule("fresh", noop, every="1m")
    now = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)
    app.schedules.scheduler(clock=lambda: now).run_pass()
    assert run_ats(storage) == []  # the next tick (12:01) is more than lookahead away


def test_ticks_are_enqueued_ahead_with_run_at_at_the_tick() -> None:
    storage = MemoryStorage()
    app = app_with(storage)
    app.schedule("s", noop, every="1m")
    clock = Clock(datetime(2026, 6, 1, 12, 0, 56, tzinfo=UTC))
    scheduler = app.schedules.scheduler(clock=clock, lookahead=5)
    scheduler.run_pass()
    [record] = storage.search(JobQuery(limit=1000)).jobs
    assert record.envelope.run_at == datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    assert record.envelope.schedule == "s"
    assert record.id == tick_id("s", record.envelope.run_at)


# -- many workers, pause, removal -------------------------------------------------------


def test_three_schedulers_on_one_store_make_one_job_per_tick() -> None:
    storage = MemoryStorage()
    app = app_with(storage)
    app.schedule("s", noop, every="1s")
    clock = Clock(datetime(2026, 6, 1, 12, 0, 0, 300_000, tzinfo=UTC))
    schedulers = [app.schedules.scheduler(clock=clock) for _ in range(3)]
    for _ in range(30):
        for s in schedulers:
            s.run_pass()
        clock.advance(0.37)
    stamps = run_ats(storage)
    assert len(stamps) == len(set(stamps))
    assert stamps[-1] - stamps[0] == timedelta(seconds=len(stamps) - 1)  # no gap, no double


def test_pause_and_resume_are_obeyed_by_every_worker_and_skip_paused_ticks() -> None:
    storage = MemoryStorage()
    app = app_with(storage)
    app.schedule("s", noop, every="10s")
    clock = Clock(datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC))
    other = app_with(storage)  # another process's view of the same schedules
    other.schedule("s", noop, every="10s")
    scheduler = other.schedules.scheduler(clock=clock, lookahead=1, grace=5)
    drive(scheduler, clock, clock.now + timedelta(seconds=30))
    before = len(run_ats(storage))
    app.schedules.pause("s")
    assert app.schedules.is_paused("s")
    assert [i.paused for i in app.schedules.list()] == [True]
    drive(scheduler, clock, clock.now + timedelta(seconds=60))
    assert len(run_ats(storage)) == before
    app.schedules.resume("s")
    drive(scheduler, clock, clock.now + timedelta(seconds=30))
    after = run_ats(storage)
    assert len(after) == before + 3  # resumed ticks only: the paused minute is not caught up


def test_a_schedule_removed_from_config_stops(tmp_path: Path) -> None:
    storage = MemoryStorage()
    config = tmp_path / "oddjob.toml"
    config.write_text(
        f'allowed_prefixes = ["oddjob_core.testing"]\n[schedules.a]\ntarget = "{TARGET}"\n'
        f'every = "10s"\n[schedules.b]\ntarget = "{TARGET}"\nevery = "10s"\nqueue = "bq"\n'
    )
    clock = Clock(datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC))
    first = Oddjob(config, storage_instance=storage).schedules.scheduler(clock=clock, lookahead=1)
    drive(first, clock, clock.now + timedelta(seconds=30))
    b_before = len(run_ats(storage, "bq"))
    assert b_before >= 3
    config.write_text(
        f'allowed_prefixes = ["oddjob_core.testing"]\n[schedules.a]\ntarget = "{TARGET}"\n'
        'every = "10s"\n'
    )
    second = Oddjob(config, storage_instance=storage).schedules.scheduler(clock=clock, lookahead=1)
    drive(second, clock, clock.now + timedelta(seconds=60))
    assert len(run_ats(storage, "bq")) == b_before
    assert len(run_ats(storage)) >= 8


# -- definitions and validation --------------------------------------------------------


def test_config_schedules_are_bound_and_listed(tmp_path: Path) -> None:
    config = tmp_path / "oddjob.toml"
    config.write_text(
        'allowed_prefixes = ["oddjob_core.testing"]\n'
        f'[schedules.nightly]\ntarget = "{TARGET}"\ncron = "0 3 * * *"\n'
        'timezone = "Europe/Berlin"\nargs = [42]\nkwargs = {s = "x"}\nqueue = "reports"\n'
        "priority = 5\n"
    )
    app = Oddjob(config, storage_instance=MemoryStorage())
    [info] = app.schedules.list(now=datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    assert (info.name, info.cron, info.timezone, info.queue) == (
        "nightly",
        "0 3 * * *",
        "Europe/Berlin",
        "reports",
    )
    assert info.next_run == datetime(2026, 6, 2, 1, 0, tzinfo=UTC)
    assert info.last_tick == datetime(2026, 6, 1, 1, 0, tzinfo=UTC)
    assert info.last_job_state is None
    assert info.paused is False
    schedule = app.schedules.get("nightly")
    assert schedule.template.arguments == {"n": 42, "s": "x"}
    assert schedule.template.priority == 5


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('cron = "61 * * * *"', "bad cron expression"),
        ('cron = "0 3 * *"', "bad cron expression"),
        ('cron = "0 3 * * *"\ntimezone = "Mars/Olympus"', "unknown timezone"),
        ('every = "1m"\nargs = ["not-an-int"]', "n"),
        ('every = "1m"\nargs = [1, "x", 3]', "arguments do not fit"),
        ('every = "soon"', "not a duration"),
    ],
)
def test_a_bad_schedule_fails_at_start_naming_it(tmp_path: Path, table: str, message: str) -> None:
    config = tmp_path / "oddjob.toml"
    config.write_text(
        f'allowed_prefixes = ["oddjob_core.testing"]\n[schedules.broken]\ntarget = "{TARGET}"\n{table}\n'
    )
    app = Oddjob(config, storage_instance=MemoryStorage())
    with pytest.raises(ConfigError, match="schedule 'broken'") as caught:
        app.schedules.definitions()
    assert message in str(caught.value)


def test_a_table_with_both_or_neither_timing_is_refused_with_its_path(tmp_path: Path) -> None:
    config = tmp_path / "oddjob.toml"
    config.write_text(f'[schedules.twice]\ntarget = "{TARGET}"\ncron = "* * * * *"\nevery = "1m"\n')
    with pytest.raises(ConfigError, match=r"schedules\.twice"):
        Oddjob(config)
    config.write_text(f'[schedules.odd]\ntarget = "{TARGET}"\nevry = "1m"\n')
    with pytest.raises(ConfigError, match=r"schedules\.odd"):
        Oddjob(config)


def test_code_schedules_validate_at_definition() -> None:
    app = app_with(MemoryStorage())
    with pytest.raises(ConfigError, match=r"schedule 'x'.*bad cron"):
        app.schedule("x", noop, cron="nope")
    with pytest.raises(ConfigError, match=r"schedule 'y'.*arguments do not fit"):
        app.schedule("y", noop, 1, "a", 3, every="1m")
    with pytest.raises(ConfigError, match="schedule name"):
        app.schedule("bad name!", noop, every="1m")


def test_trigger_enqueues_one_extra_run_now() -> None:
    storage = MemoryStorage()
    app = app_with(storage)
    app.schedule("s", noop, 7, cron="0 3 * * *")
    job_id = app.schedules.trigger("s")
    record = storage.get(job_id)
    assert record is not None
    assert record.envelope.schedule == "s"
    assert record.envelope.arguments == {"n": 7}
    with pytest.raises(ConfigError, match="no schedule named 'nope'"):
        app.schedules.trigger("nope")


def test_a_store_that_cannot_deduplicate_ids_refuses_to_schedule() -> None:
    class NoDedup(MemoryStorage):
        deduplicates_ids = False

    app = app_with(NoDedup())
    app.schedule("s", noop, every="1m")
    with pytest.raises(ConfigError, match="--no-schedules"):
        app.schedules.scheduler()


def test_pause_on_a_store_without_key_value_state_says_so() -> None:
    from oddjob_core.storage import Storage

    class Bare(Storage):
        name = "bare"
        add = claim = complete = retry = fail = release = extend = next_due = MemoryStorage.add  # type: ignore[assignment]

    app = app_with(Bare.__new__(Bare))  # type: ignore[arg-type]
    app.schedule("s", noop, every="1m")
    with pytest.raises(UnsupportedOperation, match="cannot pause schedules"):
        app.schedules.pause("s")


def test_tick_ids_differ_per_schedule_for_one_instant() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert len({tick_id(f"s{i}", t) for i in range(1000)}) == 1000
    assert isinstance(tick_id("s", t), uuid.UUID)


# -- unique jobs through the app ------------------------------------------------------


def test_enqueue_with_a_key_returns_the_waiting_jobs_id_and_stores_nothing() -> None:
    storage = MemoryStorage()
    app = app_with(storage)
    first = app.options(key="invoice-42").enqueue(noop, 1)
    assert app.options(key="invoice-42").enqueue(noop, 2) == first
    assert app.options(key="invoice-42", queue="other").enqueue(noop, 3) != first
    assert len(storage.search(JobQuery(limit=100)).jobs) == 2
    with pytest.raises(EnqueueError, match="enqueue_many"):
        app.options(key="k").enqueue_many([])


def test_a_key_on_a_store_without_unique_keys_is_refused_clearly() -> None:
    from oddjob_core.storage import Storage

    class Plain(Storage):
        name = "plain"
        add = claim = complete = retry = fail = release = extend = next_due = MemoryStorage.add  # type: ignore[assignment]

    app = app_with(Plain.__new__(Plain))  # type: ignore[arg-type]
    with pytest.raises(UnsupportedOperation, match="cannot keep unique job keys"):
        app.options(key="k").enqueue(noop)
