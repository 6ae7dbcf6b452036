"""Behaviour tests every storage backend must pass; capabilities turn tests into visible skips.

Subclass ``StorageSuite`` (pytest collects the subclass, not this base) and
provide ``storage_factory``: a fixture yielding a zero-argument callable that
returns a new backend instance on one fresh, empty namespace (database schema,
vhost, folder...). Every call must return an instance that sees the same jobs,
as a second worker process would. Also implement ``inject_corrupt_job``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from typing import Any, ClassVar

import msgspec
import pytest

from ..clock import utcnow
from ..errors import LeaseLost
from ..model import AttemptError, Claim, JobQuery, JobState, RetryPolicy
from ..storage import (
    JobManagement,
    QueueManagement,
    Storage,
)
from .envelopes import make_envelope
from .poison_suite import PoisonSuite

StorageFactory = Callable[[], Storage]


@contextlib.contextmanager
def closing_factory(make: StorageFactory) -> Iterator[StorageFactory]:
    """Wrap ``make`` so every instance it returned is closed when the block ends.

    For a ``storage_factory`` fixture whose instances hold connections or pools:
    ``with closing_factory(lambda: MyStorage(options)) as factory: yield factory``.
    """
    made: list[Storage] = []

    def factory() -> Storage:
        instance = make()
        made.append(instance)
        return instance

    try:
        yield factory
    finally:
        for instance in made:
            instance.close()


LEASE = 30.0
#: a lease meant to expire during a test: long enough that a loaded 2-core machine still
#: makes the claim's next call (asserting the job is leased) before it runs out
SHORT_LEASE = 1.0
OWNER = "suite-worker"


def _error(attempt: int, message: str = "boom") -> AttemptError:
    return AttemptError(
        attempt=attempt,
        type="builtins.RuntimeError",
        message=message,
        traceback="Traceback (most recent call last):\n  ...\nRuntimeError: boom",
        at=utcnow(),
    )


def _drain(storage: Storage, queue: str, batch: int = 50) -> list[Claim]:
    claims: list[Claim] = []
    while True:
        got = storage.claim(queue, batch, LEASE, OWNER)
        if not got:
            return claims
        claims.extend(got)


def _wait_until_claimed(
    storage: Storage, queue: str, timeout: float, lease: float = LEASE, limit: int = 10
) -> list[Claim]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = storage.claim(queue, limit, lease, OWNER)
        if got:
            return got
        time.sleep(0.05)
    return []


def _expected_failure(test: Callable[..., None], reason: str) -> Callable[..., None]:
    """A copy of suite test ``test`` marked as a strict xfail (the suite's own stays unmarked)."""

    @functools.wraps(test)
    def known_to_fail(*args: Any, **kwargs: Any) -> None:
        test(*args, **kwargs)

    marked: Callable[..., None] = pytest.mark.xfail(reason=reason, strict=True)(known_to_fail)
    return marked


class StorageSuite(PoisonSuite):
    """Conformance tests for ``oddjob_core.storage.Storage`` implementations.

    Poison isolation (``PoisonSuite``, its own module) comes with it.
    """

    __test__ = False  # collected through subclasses only

    #: suite tests a subclass overrides, each with the reason (the guard test checks this)
    overridden_tests: ClassVar[dict[str, str]] = {}
    #: suite tests this backend is known to fail, each with the reason: they run as
    #: strict xfails (shown in the summary; an unexpected pass fails, so a fix is noticed)
    expected_failures: ClassVar[dict[str, str]] = {}
    #: slack for backends whose clocks or delays are coarse (seconds)
    timing_slack: ClassVar[float] = 0.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True
        for name, reason in cls.__dict__.get("expected_failures", {}).items():
            setattr(cls, name, _expected_failure(getattr(cls, name), reason))

    # -- fixtures the subclass supplies ---------------------------------------

    @pytest.fixture
    def storage_factory(self) -> Iterator[StorageFactory]:
        """Yield a callable that makes instances on one fresh, empty namespace."""
        raise NotImplementedError("subclass StorageSuite and provide a storage_factory fixture")

    def inject_corrupt_job(self, storage: Storage, queue: str) -> None:
        """Put a job into ``queue`` that the backend cannot decode (garbage bytes, wrong schema)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement inject_corrupt_job(storage, queue)"
        )

    @pytest.fixture
    def storage(self, storage_factory: StorageFactory) -> Iterator[Storage]:
        instance = storage_factory()
        try:
            yield instance
        finally:
            instance.close()

    def require(self, storage: Storage, capability: str) -> None:
        """Skip, visibly, a test needing a capability the backend declares it lacks."""
        if not getattr(storage.capabilities, capability):
            pytest.skip(f"storage '{storage.name}' declares no '{capability}' capability")

    def require_management(self, storage: Storage) -> JobManagement:
        """``storage`` as ``JobManagement``; skip, visibly, if it does not implement it."""
        if not isinstance(storage, JobManagement):
            pytest.skip(f"storage '{storage.name}' does not implement JobManagement")
        return storage

    def require_queue_management(self, storage: Storage) -> QueueManagement:
        """``storage`` as ``QueueManagement``; skip, visibly, if it does not implement it."""
        if not isinstance(storage, QueueManagement):
            pytest.skip(f"storage '{storage.name}' does not implement QueueManagement")
        return storage

    # -- guard -------------------------------------------------------------------

    def test_suite_tests_are_not_overridden_silently(self) -> None:
        for name in dir(StorageSuite):
            if not name.startswith("test_"):
                continue
            mine = getattr(type(self), name, None)
            if name in self.expected_failures:
                continue
            if mine is None or mine is not getattr(StorageSuite, name):
                assert name in self.overridden_tests, (
                    f"{type(self).__name__} overrides or deletes suite test {name}; "
                    "list it in overridden_tests with the reason"
                )

    # -- add and claim -----------------------------------------------------------

    def test_added_job_is_claimed_with_its_envelope_intact(self, storage: Storage) -> None:
        env = make_envelope(
            "q",
            arguments={
                "when": "2026-01-02T03:04:05Z",
                "amount": "1.10",
                "tags": ["a", {"b": None}],
            },
            priority=3,
            retry=RetryPolicy(max_retries=7, min_wait=2.5, retry_on=("builtins.OSError",)),
            timeout=12.5,
        )
        storage.add([env])
        [claim] = storage.claim("q", 10, LEASE, OWNER)
        assert claim.job.id == env.id
        assert claim.job.target == env.target
        assert claim.job.arguments == env.arguments
        assert claim.job.retry == env.retry
        assert claim.job.timeout == env.timeout
        assert claim.job.priority == 3
        assert abs((claim.job.run_at - env.run_at).total_seconds()) < 0.001
        assert claim.job.attempts == 1
        assert claim.owner == OWNER
        assert claim.recovered is False
        assert claim.lease_expires_at.tzinfo is not None
        assert claim.lease_expires_at > utcnow() + timedelta(seconds=LEASE / 2)

    def test_claim_on_empty_queue_returns_nothing(self, storage: Storage) -> None:
        assert storage.claim("empty", 10, LEASE, OWNER) == []

    def test_batch_add_stores_every_job_once(self, storage: Storage) -> None:
        envs = [make_envelope("batch", arguments={"i": i}) for i in range(250)]
        storage.add(envs)
        claims = _drain(storage, "batch")
        assert sorted(c.job.id for c in claims) == sorted(e.id for e in envs)

    def test_claim_respects_limit(self, storage: Storage) -> None:
        storage.add([make_envelope("lim") for _ in range(7)])
        assert len(storage.claim("lim", 3, LEASE, OWNER)) == 3
        assert len(storage.claim("lim", 3, LEASE, OWNER)) == 3
        assert len(storage.claim("lim", 3, LEASE, OWNER)) == 1

    def test_claim_order_is_fifo_for_equal_priority(self, storage: Storage) -> None:
        self.require(storage, "fifo")
        envs = [make_envelope("fifo", arguments={"i": i}) for i in range(20)]
        storage.add(envs)
        order = [c.job.id for c in _drain(storage, "fifo", batch=3)]
        assert order == [e.id for e in envs]

    def test_higher_priority_is_claimed_first(self, storage: Storage) -> None:
        self.require(storage, "priority")
        low = make_envelope("prio", priority=0)
        high = make_envelope("prio", priority=10)
        mid = make_envelope("prio", priority=5)
        storage.add([low, high, mid])
        order = [c.job.id for c in _drain(storage, "prio", batch=1)]
        assert order == [high.id, mid.id, low.id]

    def test_job_is_not_claimed_before_run_at(self, storage: Storage) -> None:
        soon = make_envelope("later", delay=1.5)
        far = make_envelope("later", run_at=utcnow() + timedelta(days=3))
        storage.add([soon, far])
        assert storage.claim("later", 10, LEASE, OWNER) == []
        claims = _wait_until_claimed(storage, "later", timeout=6 + self.timing_slack)
        assert [c.job.id for c in claims] == [soon.id]
        assert utcnow() >= soon.run_at
        assert storage.claim("later", 10, LEASE, OWNER) == []

    def test_run_at_keeps_its_time_zone_as_utc(self, storage: Storage) -> None:
        env = make_envelope("tz")
        storage.add([env])
        [claim] = storage.claim("tz", 1, LEASE, OWNER)
        assert claim.job.run_at.utcoffset() == timedelta(0)
        assert claim.job.created_at.astimezone(UTC) == env.created_at

    def test_queues_are_isolated(self, storage: Storage) -> None:
        a, b = make_envelope("a"), make_envelope("b")
        storage.add([a, b])
        assert [c.job.id for c in storage.claim("a", 10, LEASE, OWNER)] == [a.id]
        assert [c.job.id for c in storage.claim("b", 10, LEASE, OWNER)] == [b.id]

    def test_leased_job_is_not_claimed_again(self, storage: Storage) -> None:
        storage.add([make_envelope("lease")])
        assert len(storage.claim("lease", 10, LEASE, OWNER)) == 1
        assert storage.claim("lease", 10, LEASE, "other-worker") == []

    def test_claims_are_exclusive_under_concurrency(self, storage_factory: StorageFactory) -> None:
        producer = storage_factory()
        envs = [make_envelope("race", arguments={"i": i}) for i in range(300)]
        producer.add(envs)
        seen: list[uuid.UUID] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def worker(index: int) -> None:
            instance = (
                storage_factory() if producer.capabilities.shared_between_processes else producer
            )
            try:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:  # until every job was claimed (or a bug)
                    got = instance.claim("race", 5, LEASE, f"w{index}")
                    if not got:
                        with lock:
                            if len(seen) >= len(envs):
                                break
                        time.sleep(0.02)
                        continue
                    with lock:
                        seen.extend(c.job.id for c in got)
                    for c in got:
                        instance.complete(c, None)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                if instance is not producer:
                    instance.close()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        producer.close()
        assert not errors, errors
        assert len(seen) == len(set(seen)), "a job was claimed twice while leased"
        assert set(seen) == {e.id for e in envs}

    # -- leases and fencing ------------------------------------------------------

    def test_expired_lease_is_claimed_again_as_recovered(self, storage: Storage) -> None:
        self.require(storage, "lease_expiry")
        env = make_envelope("expire")
        storage.add([env])
        [first] = storage.claim("expire", 1, SHORT_LEASE, "crashed-worker")
        assert storage.claim("expire", 1, LEASE, OWNER) == []
        time.sleep(SHORT_LEASE + 0.5 + self.timing_slack)
        [second] = _wait_until_claimed(storage, "expire", timeout=5 + self.timing_slack)
        assert second.job.id == env.id
        assert second.recovered is True
        assert second.job.attempts == 2
        assert second.token != first.token

    def test_stale_claim_cannot_record_an_outcome(self, storage: Storage) -> None:
        self.require(storage, "lease_expiry")
        storage.add([make_envelope("fence")])
        [stale] = storage.claim("fence", 1, SHORT_LEASE, "slow-worker")
        time.sleep(SHORT_LEASE + 0.5 + self.timing_slack)
        [fresh] = _wait_until_claimed(storage, "fence", timeout=5 + self.timing_slack)
        with pytest.raises(LeaseLost):
            storage.complete(stale, "stale result")
        with pytest.raises(LeaseLost):
            storage.retry(stale, utcnow(), _error(1))
        with pytest.raises(LeaseLost):
            storage.fail(stale, _error(1))
        assert storage.extend([stale], LEASE) == {stale.job.id}
        lost = storage.complete_many([(stale, "stale result")])
        assert set(lost) == {stale.job.id}
        assert isinstance(lost[stale.job.id], LeaseLost)
        storage.release([stale])  # skipped silently: the fresh owner keeps the job
        assert storage.claim("fence", 1, LEASE, OWNER) == []
        storage.complete(fresh, "fresh result")

    def test_stale_claim_leaves_the_fresh_owners_outcome_in_place(self, storage: Storage) -> None:
        self.require(storage, "lease_expiry")
        jobs = self.require_management(storage)
        storage.add([make_envelope("fence-get")])
        [stale] = storage.claim("fence-get", 1, SHORT_LEASE, "slow-worker")
        time.sleep(SHORT_LEASE + 0.5 + self.timing_slack)
        [fresh] = _wait_until_claimed(storage, "fence-get", timeout=5 + self.timing_slack)
        assert storage.extend([stale], 3600) == {stale.job.id}
        record = jobs.get(fresh.job.id)
        assert record is not None
        assert record.lease_expires_at is not None
        # the stale extend renewed nothing: the fresh owner's lease is as its claim set it
        assert abs((record.lease_expires_at - fresh.lease_expires_at).total_seconds()) < 1.0
        storage.complete(fresh, "fresh result")
        with pytest.raises(LeaseLost):
            storage.fail(stale, _error(1))
        assert storage.complete_many([(stale, "stale result")]).keys() == {stale.job.id}
        record = jobs.get(fresh.job.id)
        assert record is not None
        assert record.state is JobState.SUCCEEDED
        assert record.result == "fresh result"
        assert record.envelope.errors == ()

    def test_finished_claim_cannot_record_a_second_outcome(self, storage: Storage) -> None:
        storage.add([make_envelope("twice")])
        [claim] = storage.claim("twice", 1, LEASE, OWNER)
        storage.complete(claim, 1)
        with pytest.raises(LeaseLost):
            storage.fail(claim, _error(1))

    def test_extend_keeps_the_lease_past_its_first_expiry(self, storage: Storage) -> None:
        self.require(storage, "lease_expiry")
        storage.add([make_envelope("extend")])
        [claim] = storage.claim("extend", 1, 2 * SHORT_LEASE, OWNER)
        assert storage.extend([claim], LEASE) == set()  # well within the first lease
        time.sleep(2 * SHORT_LEASE + 0.5 + self.timing_slack)
        assert storage.claim("extend", 1, LEASE, "other-worker") == []
        storage.complete(claim, None)

    def test_extended_lease_still_expires(self, storage: Storage) -> None:
        self.require(storage, "lease_expiry")
        storage.add([make_envelope("extend-expires")])
        [claim] = storage.claim("extend-expires", 1, SHORT_LEASE, "crashed-worker")
        assert storage.extend([claim], 2 * SHORT_LEASE) == set()
        time.sleep(SHORT_LEASE + 0.2)  # past the first expiry, not the renewed one
        [again] = _wait_until_claimed(storage, "extend-expires", timeout=6 + self.timing_slack)
        assert again.recovered is True  # the renewed lease ran out in its turn

    def test_release_keeps_the_earlier_attempts_counted(self, storage: Storage) -> None:
        storage.add([make_envelope("release-2")])
        [claim] = storage.claim("release-2", 1, LEASE, OWNER)
        storage.retry(claim, utcnow(), _error(1))
        [second] = _wait_until_claimed(storage, "release-2", timeout=5 + self.timing_slack)
        assert second.job.attempts == 2
        storage.release([second])
        [third] = _wait_until_claimed(storage, "release-2", timeout=5 + self.timing_slack)
        assert third.job.attempts == 2  # the released attempt is not counted, the first is

    def test_release_returns_the_job_without_counting_the_attempt(self, storage: Storage) -> None:
        env = make_envelope("release")
        storage.add([env])
        [claim] = storage.claim("release", 1, LEASE, OWNER)
        storage.release([claim])
        [again] = _wait_until_claimed(storage, "release", timeout=5 + self.timing_slack)
        assert again.job.id == env.id
        assert again.job.attempts == 1
        assert again.recovered is False

    # -- outcomes ----------------------------------------------------------------

    def test_complete_records_the_result(self, storage: Storage) -> None:
        managed = self.require_management(storage)
        self.require(storage, "keeps_finished")
        env = make_envelope("done")
        storage.add([env])
        [claim] = storage.claim("done", 1, LEASE, OWNER)
        storage.complete(claim, {"total": 3, "items": ["a", "b"]})
        record = managed.get(env.id)
        assert record is not None
        assert record.state is JobState.SUCCEEDED
        assert record.result == {"total": 3, "items": ["a", "b"]}
        assert record.finished_at is not None
        assert record.lease_owner is None
        assert storage.claim("done", 1, LEASE, OWNER) == []

    def _complete_many_with_one_stale(self, storage: Storage) -> list[Claim]:
        """Five claims: the first completed alone, then all five through ``complete_many``."""
        envelopes = [make_envelope("many", arguments={"i": i}) for i in range(5)]
        storage.add(envelopes)
        claims = _drain(storage, "many")
        assert len(claims) == 5
        finished = claims[0]
        storage.complete(finished, "alone")  # its claim is spent: a second outcome is stale
        assert storage.complete_many([]) == {}
        lost = storage.complete_many([(c, {"n": i}) for i, c in enumerate(claims)])
        assert set(lost) == {finished.job.id}
        assert isinstance(lost[finished.job.id], LeaseLost)
        assert storage.claim("many", 10, LEASE, OWNER) == []
        return claims

    def test_complete_many_records_each_job_and_reports_stale_claims(
        self, storage: Storage
    ) -> None:
        self._complete_many_with_one_stale(storage)

    def test_complete_many_stores_each_result(self, storage: Storage) -> None:
        jobs = self.require_management(storage)
        self.require(storage, "keeps_finished")
        claims = self._complete_many_with_one_stale(storage)
        for i, claim in enumerate(claims):
            record = jobs.get(claim.job.id)
            assert record is not None
            assert record.state is JobState.SUCCEEDED
            assert record.result == ("alone" if i == 0 else {"n": i})

    def test_complete_many_successes_are_counted(self, storage: Storage) -> None:
        counted = self.require_queue_management(storage)
        self.require(storage, "keeps_finished")
        self._complete_many_with_one_stale(storage)
        assert counted.counts("many")["many"][JobState.SUCCEEDED] == 5

    def test_retry_makes_the_job_due_again_at_its_time(self, storage: Storage) -> None:
        env = make_envelope("retry")
        storage.add([env])
        [claim] = storage.claim("retry", 1, LEASE, OWNER)
        storage.retry(claim, utcnow() + timedelta(seconds=1.2), _error(1))
        assert storage.claim("retry", 1, LEASE, OWNER) == []
        [again] = _wait_until_claimed(storage, "retry", timeout=6 + self.timing_slack)
        assert again.job.id == env.id
        assert again.job.attempts == 2
        assert [e.message for e in again.job.errors] == ["boom"]
        assert again.recovered is False

    def _retry_then_fail(self, storage: Storage, queue: str) -> uuid.UUID:
        env = make_envelope(queue)
        storage.add([env])
        [claim] = storage.claim(queue, 1, LEASE, OWNER)
        storage.retry(claim, utcnow(), _error(1, "first"))
        [claim] = _wait_until_claimed(storage, queue, timeout=5 + self.timing_slack)
        assert [e.message for e in claim.job.errors] == ["first"]
        storage.fail(claim, _error(2, "second"))
        assert storage.claim(queue, 1, LEASE, OWNER) == []
        return env.id

    def test_failed_job_is_never_claimed_again(self, storage: Storage) -> None:
        self._retry_then_fail(storage, "fail")

    def test_fail_keeps_every_attempt_error(self, storage: Storage) -> None:
        jobs = self.require_management(storage)
        job_id = self._retry_then_fail(storage, "fail-get")
        record = jobs.get(job_id)
        assert record is not None
        assert record.state is JobState.FAILED
        assert [(e.attempt, e.message) for e in record.envelope.errors] == [
            (1, "first"),
            (2, "second"),
        ]
        assert record.envelope.errors[0].traceback.startswith("Traceback")

    def test_corrupt_stored_job_is_failed_and_skipped(self, storage: Storage) -> None:
        good = make_envelope("corrupt")
        self.inject_corrupt_job(storage, "corrupt")
        storage.add([good])
        claims = _drain(storage, "corrupt")
        assert [c.job.id for c in claims] == [good.id]

    def test_corrupt_job_is_counted_as_failed(self, storage: Storage) -> None:
        counted = self.require_queue_management(storage)
        self.inject_corrupt_job(storage, "corrupt-counted")
        assert storage.claim("corrupt-counted", 10, LEASE, OWNER) == []
        counts = counted.counts("corrupt-counted")["corrupt-counted"]
        assert counts.get(JobState.FAILED) == 1

    def test_corrupt_job_is_listed_as_failed_with_its_decode_error(self, storage: Storage) -> None:
        managed = self.require_management(storage)
        self.inject_corrupt_job(storage, "corrupt-shown")
        assert storage.claim("corrupt-shown", 10, LEASE, OWNER) == []
        page = managed.search(JobQuery(queue="corrupt-shown", states=(JobState.FAILED,)))
        assert page.total == 1
        [record] = page.jobs
        assert record.state is JobState.FAILED
        assert record.envelope.errors, "the decode error was not kept"
        assert record.envelope.errors[-1].message  # what could not be decoded, for the user

    def test_next_due_reports_the_earliest_waiting_job(self, storage: Storage) -> None:
        assert storage.next_due("nd") is None
        later = utcnow() + timedelta(hours=2)
        storage.add([make_envelope("nd", run_at=later), make_envelope("nd", delay=3600 * 5)])
        due = storage.next_due("nd")
        assert due is not None
        assert abs((due - later).total_seconds()) < 1.0

    # -- management --------------------------------------------------------------

    def test_get_returns_none_for_an_unknown_id(self, storage: Storage) -> None:
        managed = self.require_management(storage)
        assert managed.get(uuid.uuid4()) is None

    def test_get_shows_state_and_envelope(self, storage: Storage) -> None:
        managed = self.require_management(storage)
        now_job, later_job = make_envelope("show"), make_envelope("show", delay=3600)
        storage.add([now_job, later_job])
        a, b = managed.get(now_job.id), managed.get(later_job.id)
        assert a is not None
        assert b is not None
        assert a.state is JobState.READY
        assert b.state is JobState.SCHEDULED
        assert a.envelope.arguments == now_job.arguments
        storage.claim("show", 10, LEASE, OWNER)
        running = managed.get(now_job.id)
        assert running is not None
        assert running.state is JobState.RUNNING
        assert running.lease_owner == OWNER

    def test_counts_per_queue_and_state(self, storage: Storage) -> None:
        managed = self.require_queue_management(storage)
        storage.add([make_envelope("c1") for _ in range(3)] + [make_envelope("c2", delay=600)])
        [claim] = storage.claim("c1", 1, LEASE, OWNER)
        storage.complete(claim, None)
        counts = managed.counts()
        assert counts["c1"].get(JobState.READY) == 2
        assert counts["c2"].get(JobState.SCHEDULED) == 1
        assert set(managed.counts("c2")) == {"c2"}

    def test_counts_include_finished_jobs(self, storage: Storage) -> None:
        managed = self.require_queue_management(storage)
        self.require(storage, "keeps_finished")
        storage.add([make_envelope("c3") for _ in range(3)])
        first, second, _ = _drain(storage, "c3")
        storage.complete(first, None)
        storage.fail(second, _error(1))
        counts = managed.counts("c3")["c3"]
        assert counts.get(JobState.SUCCEEDED) == 1
        assert counts.get(JobState.FAILED) == 1
        assert counts.get(JobState.RUNNING) == 1

    def test_search_filters_and_pages(self, storage: Storage) -> None:
        managed = self.require_management(storage)
        t0 = utcnow()
        envs = [make_envelope("s", target="pkg.mod:alpha") for _ in range(5)]
        envs += [make_envelope("s", target="pkg.mod:beta") for _ in range(2)]
        envs += [make_envelope("other", target="pkg.mod:alpha")]
        storage.add(envs)
        page = managed.search(JobQuery(queue="s", limit=3))
        assert page.total == 7
        assert len(page.jobs) == 3
        assert [j.id for j in page.jobs] == sorted((e.id for e in envs[:7]), reverse=True)[:3]
        rest = managed.search(JobQuery(queue="s", limit=3, offset=6))
        assert len(rest.jobs) == 1
        assert managed.search(JobQuery(target="pkg.mod:beta")).total == 2
        assert managed.search(JobQuery(queue="s", states=(JobState.READY,))).total == 7
        assert managed.search(JobQuery(states=(JobState.FAILED,))).total == 0
        assert managed.search(JobQuery(created_after=t0 - timedelta(seconds=1))).total == 8
        assert managed.search(JobQuery(created_before=t0 - timedelta(seconds=1))).total == 0

    def test_search_by_argument_value(self, storage: Storage) -> None:
        managed = self.require_management(storage)
        self.require(storage, "search_by_argument")
        storage.add(
            [make_envelope("arg", arguments={"customer": i % 3, "s": "x"}) for i in range(9)]
        )
        page = managed.search(JobQuery(arguments={"customer": 2}))
        assert page.total == 3
        assert all(j.envelope.arguments["customer"] == 2 for j in page.jobs)

    def test_cancel_stops_a_waiting_job_only(self, storage: Storage) -> None:
        managed = self.require_management(storage)
        waiting, running = make_envelope("cancel", delay=600), make_envelope("cancel")
        storage.add([waiting, running])
        [claim] = storage.claim("cancel", 10, LEASE, OWNER)
        assert claim.job.id == running.id
        assert managed.cancel(waiting.id) is True
        assert managed.cancel(running.id) is False
        assert managed.cancel(uuid.uuid4()) is False
        record = managed.get(waiting.id)
        assert record is not None
        assert record.state is JobState.CANCELLED

    def test_cancelled_job_is_never_claimed(self, storage: Storage) -> None:
        managed = self.require_management(storage)
        env = make_envelope("cancel2")
        storage.add([env])
        assert managed.cancel(env.id) is True
        assert storage.claim("cancel2", 10, LEASE, OWNER) == []

    def test_requeue_gives_a_failed_job_a_fresh_start(self, storage: Storage) -> None:
        managed = self.require_queue_management(storage)
        env = make_envelope("requeue")
        storage.add([env])
        [claim] = storage.claim("requeue", 1, LEASE, OWNER)
        storage.fail(claim, _error(1))
        assert managed.requeue(env.id) is True
        [again] = _wait_until_claimed(storage, "requeue", timeout=5 + self.timing_slack)
        assert again.job.id == env.id
        assert again.job.attempts == 1
        assert managed.requeue(env.id) is False  # running now
        assert managed.requeue(uuid.uuid4()) is False

    def test_purge_deletes_old_finished_jobs_only(self, storage: Storage) -> None:
        managed = self.require_queue_management(storage)
        done, waiting = make_envelope("purge"), make_envelope("purge", delay=600)
        storage.add([done, waiting])
        [claim] = storage.claim("purge", 10, LEASE, OWNER)
        storage.complete(claim, None)
        assert managed.purge([JobState.SUCCEEDED], older_than=utcnow() - timedelta(hours=1)) == 0
        assert managed.purge([JobState.SUCCEEDED], queue="elsewhere") == 0
        assert managed.purge([JobState.SUCCEEDED], older_than=utcnow() + timedelta(seconds=1)) == 1
        with pytest.raises(ValueError, match="only succeeded, failed or cancelled"):
            managed.purge([JobState.SCHEDULED])

    def test_purged_job_is_gone_and_waiting_jobs_stay(self, storage: Storage) -> None:
        jobs = self.require_management(storage)
        done, waiting = make_envelope("purge-get"), make_envelope("purge-get", delay=600)
        storage.add([done, waiting])
        [claim] = storage.claim("purge-get", 10, LEASE, OWNER)
        storage.complete(claim, None)
        assert jobs.purge([JobState.SUCCEEDED], older_than=utcnow() + timedelta(seconds=1)) == 1
        assert jobs.get(done.id) is None
        assert jobs.get(waiting.id) is not None

    # -- contract details (issue #11: each test here caught a bug planted in a backend
    #    that every other suite test let through) -------------------------------

    def test_finished_job_is_not_claimed_when_its_old_lease_runs_out(
        self, storage: Storage
    ) -> None:
        done, dead, later = (make_envelope("over", arguments={"i": i}) for i in range(3))
        storage.add([done, dead, later])
        claims = {c.job.id: c for c in storage.claim("over", 10, 1.0, OWNER)}
        assert set(claims) == {done.id, dead.id, later.id}
        storage.complete(claims[done.id], None)
        storage.fail(claims[dead.id], _error(1))
        storage.retry(claims[later.id], utcnow() + timedelta(hours=1), _error(1))
        time.sleep(2.0 + self.timing_slack)  # well past the 1 s leases the outcomes ended
        assert storage.claim("over", 10, LEASE, OWNER) == []

    def test_claim_respects_limit_for_expired_leases_too(self, storage: Storage) -> None:
        self.require(storage, "lease_expiry")
        storage.add([make_envelope("lim-expired", arguments={"i": i}) for i in range(3)])
        assert len(storage.claim("lim-expired", 3, SHORT_LEASE, "crashed-worker")) == 3
        time.sleep(SHORT_LEASE + 0.5 + self.timing_slack)
        for _ in range(2):  # twice: one recovered job per claim of limit 1, never more
            [one] = _wait_until_claimed(
                storage, "lim-expired", timeout=5 + self.timing_slack, limit=1
            )
            assert one.recovered is True

    def test_re_adding_an_existing_id_keeps_the_stored_job(self, storage: Storage) -> None:
        original = make_envelope("readd", arguments={"v": "original"})
        storage.add([original])
        storage.add([msgspec.structs.replace(original, arguments={"v": "imposter"})])
        [claim] = storage.claim("readd", 10, LEASE, OWNER)  # one job, not two
        assert claim.job.arguments == {"v": "original"}
        assert claim.job.attempts == 1
        storage.add([original])  # while it runs: still leased, not due again
        assert storage.claim("readd", 10, LEASE, OWNER) == []
        storage.complete(claim, "done")
        storage.add([original])  # once finished: stays finished, not reset to ready
        assert storage.claim("readd", 10, LEASE, OWNER) == []

    def test_re_adding_a_finished_job_keeps_its_state_and_result(self, storage: Storage) -> None:
        jobs = self.require_management(storage)
        self.require(storage, "keeps_finished")
        env = make_envelope("readd-get")
        storage.add([env])
        [claim] = storage.claim("readd-get", 1, LEASE, OWNER)
        storage.complete(claim, "done")
        storage.add([env])
        record = jobs.get(env.id)
        assert record is not None
        assert record.state is JobState.SUCCEEDED
        assert record.result == "done"
        assert record.envelope.attempts == 1

    def test_fifo_tie_break_is_the_id_when_priority_and_run_at_are_equal(
        self, storage: Storage
    ) -> None:
        self.require(storage, "fifo")
        run_at = utcnow() - timedelta(seconds=1)
        envs = [make_envelope("tie", run_at=run_at, arguments={"i": i}) for i in range(12)]
        storage.add(envs)
        order = [c.job.id for c in _drain(storage, "tie", batch=5)]
        assert order == [e.id for e in envs]

    def test_next_due_includes_a_running_jobs_lease_expiry(self, storage: Storage) -> None:
        self.require(storage, "lease_expiry")
        storage.add([make_envelope("nd-lease"), make_envelope("nd-lease", delay=7200)])
        [claim] = storage.claim("nd-lease", 10, 600, OWNER)
        due = storage.next_due("nd-lease")
        assert due is not None
        assert abs((due - claim.lease_expires_at).total_seconds()) < 1.0, (due, claim)
        storage.complete(claim, None)
        due = storage.next_due("nd-lease")
        assert due is not None
        assert due > utcnow() + timedelta(seconds=3600)  # only the job two hours ahead is left

    def test_requeue_waits_for_its_run_at(self, storage: Storage) -> None:
        managed = self.require_queue_management(storage)
        env = make_envelope("rq-later")
        storage.add([env])
        [claim] = storage.claim("rq-later", 1, LEASE, OWNER)
        storage.fail(claim, _error(1))
        # wide enough that a slow requeue (RabbitMQ declares its delay ladder) returns first
        not_before = utcnow() + timedelta(seconds=3 + self.timing_slack)
        assert managed.requeue(env.id, run_at=not_before) is True
        assert storage.claim("rq-later", 1, LEASE, OWNER) == []
        [again] = _wait_until_claimed(storage, "rq-later", timeout=10 + self.timing_slack)
        assert again.job.id == env.id
        assert utcnow() >= not_before
        assert abs((again.job.run_at - not_before).total_seconds()) < 0.001

    def test_requeue_keeps_the_jobs_past_errors(self, storage: Storage) -> None:
        managed = self.require_queue_management(storage)
        env = make_envelope("rq-errors")
        storage.add([env])
        [claim] = storage.claim("rq-errors", 1, LEASE, OWNER)
        storage.fail(claim, _error(1, "the failure before the requeue"))
        assert managed.requeue(env.id) is True
        [again] = _wait_until_claimed(storage, "rq-errors", timeout=5 + self.timing_slack)
        assert again.job.attempts == 1  # a fresh retry budget ...
        assert [(e.attempt, e.message) for e in again.job.errors] == [
            (1, "the failure before the requeue")  # ... and the history kept
        ]

    def test_requeued_job_is_scheduled_or_ready_by_its_run_at(self, storage: Storage) -> None:
        jobs = self.require_management(storage)
        later, now = make_envelope("rq-state"), make_envelope("rq-state")
        storage.add([later, now])
        for claim in storage.claim("rq-state", 10, LEASE, OWNER):
            storage.fail(claim, _error(1))
        assert jobs.requeue(later.id, run_at=utcnow() + timedelta(hours=1)) is True
        assert jobs.requeue(now.id) is True
        records = jobs.get(later.id), jobs.get(now.id)
        assert [r.state if r else None for r in records] == [JobState.SCHEDULED, JobState.READY]

    def test_search_created_after_is_inclusive_and_created_before_exclusive(
        self, storage: Storage
    ) -> None:
        managed = self.require_management(storage)
        t0 = utcnow().replace(microsecond=0) - timedelta(minutes=10)
        envs = [
            msgspec.structs.replace(make_envelope("created"), created_at=t0 + timedelta(minutes=i))
            for i in range(4)
        ]
        storage.add(envs)

        def found(**bounds: Any) -> set[uuid.UUID]:
            return {j.id for j in managed.search(JobQuery(queue="created", **bounds)).jobs}

        minute = timedelta(minutes=1)
        assert found(created_after=t0 + minute) == {e.id for e in envs[1:]}
        assert found(created_before=t0 + 2 * minute) == {e.id for e in envs[:2]}
        assert found(created_after=t0 + minute, created_before=t0 + 3 * minute) == {
            envs[1].id,
            envs[2].id,
        }
