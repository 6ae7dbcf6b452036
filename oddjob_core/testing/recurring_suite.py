"""Conformance tests for schedules and unique jobs: mix ``RecurringSuite`` into a ``StorageSuite`` subclass.

    class TestMyStorage(StorageSuite, RecurringSuite): ...

It uses the same ``storage_factory`` fixture. Each instance the factory makes
stands for one worker process: two schedulers on two instances must still
make one job per tick. The key/value tests skip, visibly, on a backend that
does not implement ``oddjob_core.keyvalue.KeyValueStore``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import cast

import msgspec
import pytest

from ..clock import utcnow
from ..errors import KeyHeld
from ..keyvalue import key_value_of
from ..model import AttemptError, Claim, Envelope, JobState
from ..scheduling.lease import scheduler_lease_of
from ..scheduling.schedule import Schedule
from ..scheduling.scheduler import PAUSED, Scheduler, deduplicates_ids
from ..scheduling.timing import Every, tick_id
from ..storage import JobManagement, Storage
from ..unique import UniqueKeys, unique_keys_of
from .envelopes import make_envelope
from .workers import wait_for

LEASE = 30.0
OWNER = "recurring-suite"
StorageFactory = Callable[[], Storage]


def _schedule(name: str, queue: str, seconds: float = 1.0) -> Schedule:
    return Schedule(name=name, timing=Every(seconds), timezone="UTC", template=make_envelope(queue))


def _drain(storage: Storage, queue: str) -> list[Claim]:
    """Claim until a claim comes back empty twice (a broker may deliver in bursts)."""
    claims: list[Claim] = []
    empty = 0
    while empty < 2:
        got = storage.claim(queue, 100, LEASE, OWNER)
        empty = 0 if got else empty + 1
        claims.extend(got)
        if not got:
            time.sleep(0.5)
    return claims


def _claim_all(storage: Storage, queue: str) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    while got := storage.claim(queue, 100, LEASE, OWNER):
        ids.extend(c.job.id for c in got)
    return ids


class RecurringSuite:
    """Schedule dedup, the shared key/value table and unique keys, on any backend."""

    def test_two_workers_scheduling_one_tick_store_one_job(
        self, storage_factory: StorageFactory
    ) -> None:
        first, second = storage_factory(), storage_factory()
        if not deduplicates_ids(first):
            pytest.skip(f"storage '{first.name}' does not deduplicate ids in add")
        queue = f"rec-{uuid.uuid4().hex[:8]}"
        now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        schedule = _schedule("dedup", queue)
        runs = [
            Scheduler(store, [schedule], clock=lambda: now, lookahead=5.0, grace=2.0)
            for store in (first, second, first)
        ]
        for scheduler in runs:
            scheduler.run_pass()
        ids = _claim_all(first, queue)
        assert len(ids) == len(set(ids)), "a tick was stored twice"
        expected = {tick_id("dedup", now + timedelta(seconds=s)) for s in range(-2, 6)}
        assert set(ids) == expected, (sorted(ids), sorted(expected))

    def test_a_later_pass_adds_only_new_ticks_and_keeps_the_old_jobs(
        self, storage_factory: StorageFactory
    ) -> None:
        storage = storage_factory()
        if not deduplicates_ids(storage):
            pytest.skip(f"storage '{storage.name}' does not deduplicate ids in add")
        queue = f"rec-{uuid.uuid4().hex[:8]}"
        clock = [datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60)]
        schedule = _schedule("later", queue)
        early = Scheduler(storage, [schedule], clock=lambda: clock[0], lookahead=2.0, grace=1.0)
        early.run_pass()
        [claim, *_] = storage.claim(queue, 1, LEASE, OWNER)
        storage.complete(claim, "done")
        clock[0] += timedelta(seconds=2)
        late = Scheduler(storage, [schedule], clock=lambda: clock[0], lookahead=2.0, grace=3.0)
        late.run_pass()  # overlaps the early window: the finished tick stays finished
        ids = _claim_all(storage, queue)
        assert claim.job.id not in ids
        assert len(ids) == len(set(ids))

    def test_key_value_round_trip(self, storage_factory: StorageFactory) -> None:
        kv = key_value_of(storage_factory())
        if kv is None:
            pytest.skip("storage does not implement KeyValueStore")
        other = key_value_of(storage_factory())
        assert other is not None
        kv.kv_write({"suite-a/x": b"1", "suite-a/y": b"2", "suite-b/z": b"3"})
        assert other.kv_read("suite-a/") == {"suite-a/x": b"1", "suite-a/y": b"2"}
        other.kv_write({"suite-a/x": None, "suite-a/y": b"22"})
        assert kv.kv_read("suite-a/") == {"suite-a/y": b"22"}
        assert kv.kv_read("suite-missing/") == {}

    def test_concurrent_writes_of_keys_under_one_prefix_all_land(
        self, storage_factory: StorageFactory
    ) -> None:
        """Operators pausing different schedules at the same instant: every pause is kept."""
        stores = [key_value_of(storage_factory()) for _ in range(4)]
        if stores[0] is None:
            pytest.skip("storage does not implement KeyValueStore")
        run = uuid.uuid4().hex[:8]
        barrier = threading.Barrier(8)

        def pause(i: int) -> None:
            kv = stores[i % 4]
            assert kv is not None
            barrier.wait(30)
            kv.kv_write({f"{PAUSED}{run}-{i}": b""})

        threads = [threading.Thread(target=pause, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert stores[0] is not None
        paused = stores[0].kv_read(f"{PAUSED}{run}-")
        assert sorted(paused) == sorted(f"{PAUSED}{run}-{i}" for i in range(8))
        stores[0].kv_write(dict.fromkeys(paused))

    def test_a_paused_schedule_enqueues_nothing_on_any_worker(
        self, storage_factory: StorageFactory
    ) -> None:
        storage = storage_factory()
        kv = key_value_of(storage)
        if kv is None or not deduplicates_ids(storage):
            pytest.skip("storage keeps no key/value state or does not deduplicate ids")
        queue = f"rec-{uuid.uuid4().hex[:8]}"
        schedule = _schedule("paused-one", queue)
        kv.kv_write({"schedule-paused/paused-one": b"x"})
        now = datetime.now(UTC)
        Scheduler(storage_factory(), [schedule], clock=lambda: now).run_pass()
        assert storage.claim(queue, 10, LEASE, OWNER) == []
        kv.kv_write({"schedule-paused/paused-one": None})

    def test_tick_jobs_carry_the_schedule_name(self, storage_factory: StorageFactory) -> None:
        storage = storage_factory()
        if not deduplicates_ids(storage):
            pytest.skip(f"storage '{storage.name}' does not deduplicate ids in add")
        queue = f"rec-{uuid.uuid4().hex[:8]}"
        now = datetime.now(UTC) - timedelta(seconds=10)
        Scheduler(storage, [_schedule("named", queue)], clock=lambda: now).run_pass()
        claims = storage.claim(queue, 100, LEASE, OWNER)
        assert claims
        assert {c.job.schedule for c in claims} == {"named"}

    # -- the scheduler lease (stores whose add cannot deduplicate ids) -----------------

    def test_one_process_at_a_time_holds_the_scheduler_lease(
        self, storage_factory: StorageFactory
    ) -> None:
        first, second = storage_factory(), storage_factory()
        a, b = scheduler_lease_of(first), scheduler_lease_of(second)
        if a is None or b is None:
            pytest.skip(f"storage '{first.name}' has no scheduler lease (it deduplicates ids)")
        assert a.hold_scheduler_lease()
        assert a.hold_scheduler_lease()  # kept
        assert not b.hold_scheduler_lease()
        first.close()  # the holder goes away: the other takes over
        assert wait_for(b.hold_scheduler_lease, 30)

    def test_schedulers_sharing_a_lease_enqueue_each_tick_once(
        self, storage_factory: StorageFactory
    ) -> None:
        stores = [storage_factory(), storage_factory()]
        if scheduler_lease_of(stores[0]) is None:
            pytest.skip(f"storage '{stores[0].name}' has no scheduler lease (it deduplicates ids)")
        queue = f"rec-{uuid.uuid4().hex[:8]}"
        now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        schedule = _schedule(f"lease-{uuid.uuid4().hex[:6]}", queue)
        for _ in range(2):
            for store in stores:
                Scheduler(store, [schedule], clock=lambda: now, grace=2.0).run_pass()
        ids = [c.job.id for c in _drain(stores[0], queue)]
        assert len(ids) == len(set(ids)), "a tick was enqueued twice"
        assert len(ids) == 8  # now-2 .. now+5

    # -- unique keys -------------------------------------------------------------------

    def _unique(self, storage: Storage) -> UniqueKeys:
        found = unique_keys_of(storage)
        if found is None:
            pytest.skip(f"storage '{storage.name}' does not implement UniqueKeys")
        return found

    def test_a_second_job_with_a_held_key_is_not_stored(
        self, storage_factory: StorageFactory
    ) -> None:
        first = self._unique(storage_factory())
        second = self._unique(storage_factory())  # another process
        queue = f"uk-{uuid.uuid4().hex[:8]}"
        a, b = _keyed(queue, "invoice-42"), _keyed(queue, "invoice-42")
        assert first.add_unique(a) == a.id
        assert second.add_unique(b) == a.id
        other_queue = _keyed(f"{queue}-x", "invoice-42")
        assert first.add_unique(other_queue) == other_queue.id  # keys are per queue
        storage = cast(Storage, first)
        claims = storage.claim(queue, 10, LEASE, OWNER)
        assert [c.job.id for c in claims] == [a.id]
        assert claims[0].job.key == "invoice-42"
        c = _keyed(queue, "invoice-42")
        assert second.add_unique(c) == a.id  # running still holds the key

    def test_a_key_is_released_when_its_job_finishes(self, storage_factory: StorageFactory) -> None:
        unique = self._unique(storage_factory())
        storage = cast(Storage, unique)
        queue = f"uk-{uuid.uuid4().hex[:8]}"
        for finish in ("complete", "fail"):
            job = _keyed(queue, "k")
            assert unique.add_unique(job) == job.id
            [claim] = storage.claim(queue, 10, LEASE, OWNER)
            if finish == "complete":
                storage.complete(claim, None)
            else:
                storage.fail(claim, _error())
            again = _keyed(queue, "k")
            assert unique.add_unique(again) == again.id, f"key kept after {finish}"
            [claim] = storage.claim(queue, 10, LEASE, OWNER)
            storage.complete(claim, None)

    def test_concurrent_adds_of_one_key_store_one_job(
        self, storage_factory: StorageFactory
    ) -> None:
        stores = [self._unique(storage_factory()) for _ in range(4)]
        queue = f"uk-{uuid.uuid4().hex[:8]}"
        jobs = [_keyed(queue, "race") for _ in range(8)]
        holders: list[uuid.UUID] = []
        lock = threading.Lock()

        def add(i: int) -> None:
            got = stores[i % 4].add_unique(jobs[i])
            with lock:
                holders.append(got)

        threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(set(holders)) == 1, holders
        claims = cast(Storage, stores[0]).claim(queue, 10, LEASE, OWNER)
        assert [c.job.id for c in claims] == holders[:1]

    def test_requeueing_a_finished_job_whose_key_is_held_is_refused(
        self, storage_factory: StorageFactory
    ) -> None:
        unique = self._unique(storage_factory())
        storage, management = cast(Storage, unique), cast(JobManagement, unique)
        queue = f"uk-{uuid.uuid4().hex[:8]}"
        first, second = _keyed(queue, "k"), _keyed(queue, "k")
        unique.add_unique(first)
        [claim] = storage.claim(queue, 10, LEASE, OWNER)
        storage.complete(claim, None)
        assert unique.add_unique(second) == second.id
        with pytest.raises(KeyHeld) as refused:
            management.requeue(first.id)
        assert refused.value.holder == second.id
        record = management.get(first.id)
        assert record is not None
        assert record.state is JobState.SUCCEEDED  # left as it was
        [claim] = storage.claim(queue, 10, LEASE, OWNER)
        storage.complete(claim, None)
        assert management.requeue(first.id) is True  # the key is free: the requeued job takes it
        assert unique.add_unique(_keyed(queue, "k")) == first.id


def _keyed(queue: str, key: str) -> Envelope:
    return msgspec.structs.replace(make_envelope(queue), key=key)


def _error() -> AttemptError:
    return AttemptError(attempt=1, type="builtins.RuntimeError", message="boom", at=utcnow())
