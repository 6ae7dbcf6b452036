"""Behaviour tests every storage backend must pass; capabilities turn tests into visible skips.

Subclass ``StorageSuite`` (pytest collects the subclass, not this base) and
provide ``storage_factory``: a fixture yielding a zero-argument callable that
returns a new backend instance on one fresh, empty namespace (database schema,
vhost, folder...). Every call must return an instance that sees the same jobs,
as a second worker process would. Also implement ``inject_corrupt_job``.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, timedelta

import pytest

from ..clock import utcnow
from ..errors import LeaseLost
from ..model import Claim, JobQuery, JobState, RetryPolicy
from ..storage import Storage
from .contract_suite import ContractTests
from .envelopes import make_envelope
from .management_suite import ManagementTests
from .poison_suite import PoisonSuite
from .suite_base import (
    LEASE,
    OWNER,
    SHORT_LEASE,
    StorageFactory,
    add_and_claim,
    attempt_error,
    closing_factory,
    drain,
    wait_until_claimed,
)


class StorageSuite(ManagementTests, ContractTests, PoisonSuite):
    """Conformance tests for ``oddjob_core.storage.Storage`` implementations.

    Management (``ManagementTests``), contract details (``ContractTests``) and
    poison isolation (``PoisonSuite``) come with it, each in its own module.
    """

    __test__ = False  # collected through subclasses only

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
        claims = drain(storage, "batch")
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
        order = [c.job.id for c in drain(storage, "fifo", batch=3)]
        assert order == [e.id for e in envs]

    def test_higher_priority_is_claimed_first(self, storage: Storage) -> None:
        self.require(storage, "priority")
        low = make_envelope("prio", priority=0)
        high = make_envelope("prio", priority=10)
        mid = make_envelope("prio", priority=5)
        storage.add([low, high, mid])
        order = [c.job.id for c in drain(storage, "prio", batch=1)]
        assert order == [high.id, mid.id, low.id]

    def test_job_is_not_claimed_before_run_at(self, storage: Storage) -> None:
        soon = make_envelope("later", delay=1.5)
        far = make_envelope("later", run_at=utcnow() + timedelta(days=3))
        storage.add([soon, far])
        assert storage.claim("later", 10, LEASE, OWNER) == []
        claims = wait_until_claimed(storage, "later", timeout=6 + self.timing_slack)
        assert [c.job.id for c in claims] == [soon.id]
        assert utcnow() >= soon.run_at
        assert storage.claim("later", 10, LEASE, OWNER) == []

    def test_run_at_keeps_its_time_zone_as_utc(self, storage: Storage) -> None:
        env, claim = add_and_claim(storage, "tz")
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
        env, first = add_and_claim(storage, "expire", SHORT_LEASE, "crashed-worker")
        assert storage.claim("expire", 1, LEASE, OWNER) == []
        time.sleep(SHORT_LEASE + 0.5 + self.timing_slack)
        [second] = wait_until_claimed(storage, "expire", timeout=5 + self.timing_slack)
        assert second.job.id == env.id
        assert second.recovered is True
        assert second.job.attempts == 2
        assert second.token != first.token

    def test_stale_claim_cannot_record_an_outcome(self, storage: Storage) -> None:
        self.require(storage, "lease_expiry")
        storage.add([make_envelope("fence")])
        [stale] = storage.claim("fence", 1, SHORT_LEASE, "slow-worker")
        time.sleep(SHORT_LEASE + 0.5 + self.timing_slack)
        [fresh] = wait_until_claimed(storage, "fence", timeout=5 + self.timing_slack)
        with pytest.raises(LeaseLost):
            storage.complete(stale, "stale result")
        with pytest.raises(LeaseLost):
            storage.retry(stale, utcnow(), attempt_error(1))
        with pytest.raises(LeaseLost):
            storage.fail(stale, attempt_error(1))
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
        [fresh] = wait_until_claimed(storage, "fence-get", timeout=5 + self.timing_slack)
        assert storage.extend([stale], 3600) == {stale.job.id}
        record = jobs.get(fresh.job.id)
        assert record is not None
        assert record.lease_expires_at is not None
        # the stale extend renewed nothing: the fresh owner's lease is as its claim set it
        assert abs((record.lease_expires_at - fresh.lease_expires_at).total_seconds()) < 1.0
        storage.complete(fresh, "fresh result")
        with pytest.raises(LeaseLost):
            storage.fail(stale, attempt_error(1))
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
            storage.fail(claim, attempt_error(1))

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
        [again] = wait_until_claimed(storage, "extend-expires", timeout=6 + self.timing_slack)
        assert again.recovered is True  # the renewed lease ran out in its turn

    def test_release_keeps_the_earlier_attempts_counted(self, storage: Storage) -> None:
        storage.add([make_envelope("release-2")])
        [claim] = storage.claim("release-2", 1, LEASE, OWNER)
        storage.retry(claim, utcnow(), attempt_error(1))
        [second] = wait_until_claimed(storage, "release-2", timeout=5 + self.timing_slack)
        assert second.job.attempts == 2
        storage.release([second])
        [third] = wait_until_claimed(storage, "release-2", timeout=5 + self.timing_slack)
        assert third.job.attempts == 2  # the released attempt is not counted, the first is

    def test_release_returns_the_job_without_counting_the_attempt(self, storage: Storage) -> None:
        env, claim = add_and_claim(storage, "release")
        storage.release([claim])
        [again] = wait_until_claimed(storage, "release", timeout=5 + self.timing_slack)
        assert again.job.id == env.id
        assert again.job.attempts == 1
        assert again.recovered is False

    # -- outcomes ----------------------------------------------------------------

    def test_complete_records_the_result(self, storage: Storage) -> None:
        managed = self.require_management(storage)
        self.require(storage, "keeps_finished")
        env, claim = add_and_claim(storage, "done")
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
        claims = drain(storage, "many")
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
        env, claim = add_and_claim(storage, "retry")
        storage.retry(claim, utcnow() + timedelta(seconds=1.2), attempt_error(1))
        assert storage.claim("retry", 1, LEASE, OWNER) == []
        [again] = wait_until_claimed(storage, "retry", timeout=6 + self.timing_slack)
        assert again.job.id == env.id
        assert again.job.attempts == 2
        assert [e.message for e in again.job.errors] == ["boom"]
        assert again.recovered is False

    def _retry_then_fail(self, storage: Storage, queue: str) -> uuid.UUID:
        env, claim = add_and_claim(storage, queue)
        storage.retry(claim, utcnow(), attempt_error(1, "first"))
        [claim] = wait_until_claimed(storage, queue, timeout=5 + self.timing_slack)
        assert [e.message for e in claim.job.errors] == ["first"]
        storage.fail(claim, attempt_error(2, "second"))
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
        claims = drain(storage, "corrupt")
        assert [c.job.id for c in claims] == [good.id]

    def test_corrupt_job_is_counted_as_failed(self, storage: Storage) -> None:
        counted = self.require_queue_management(storage)
        self.inject_corrupt_job(storage, "corrupt-counted")
        assert storage.claim("corrupt-counted", 10, LEASE, OWNER) == []
        counts = counted.counts("corrupt-counted")["corrupt-counted"]
        assert counts.get(JobState.FAILED) == 1

    def test_corrupt_job_is_listed_as_failed_with_its_decodeattempt_error(
        self, storage: Storage
    ) -> None:
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


__all__ = ["LEASE", "OWNER", "SHORT_LEASE", "StorageFactory", "StorageSuite", "closing_factory"]
