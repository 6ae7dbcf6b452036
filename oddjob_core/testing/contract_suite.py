"""Conformance tests of contract details: each caught a bug planted in a backend (issue #11).

Part of ``StorageSuite``; every other suite test let those bugs through.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import msgspec

from ..clock import utcnow
from ..model import JobQuery, JobState
from ..storage import Storage
from .envelopes import make_envelope
from .suite_base import (
    LEASE,
    OWNER,
    SHORT_LEASE,
    SuiteBase,
    add_and_claim,
    attempt_error,
    drain,
    wait_until_claimed,
)


class ContractTests(SuiteBase):
    """Contract details every other suite test let through."""

    __test__ = False

    def test_finished_job_is_not_claimed_when_its_old_lease_runs_out(
        self, storage: Storage
    ) -> None:
        done, dead, later = (make_envelope("over", arguments={"i": i}) for i in range(3))
        storage.add([done, dead, later])
        claims = {c.job.id: c for c in storage.claim("over", 10, 1.0, OWNER)}
        assert set(claims) == {done.id, dead.id, later.id}
        storage.complete(claims[done.id], None)
        storage.fail(claims[dead.id], attempt_error(1))
        storage.retry(claims[later.id], utcnow() + timedelta(hours=1), attempt_error(1))
        time.sleep(2.0 + self.timing_slack)  # well past the 1 s leases the outcomes ended
        assert storage.claim("over", 10, LEASE, OWNER) == []

    def test_claim_respects_limit_for_expired_leases_too(self, storage: Storage) -> None:
        self.require(storage, "lease_expiry")
        storage.add([make_envelope("lim-expired", arguments={"i": i}) for i in range(3)])
        assert len(storage.claim("lim-expired", 3, SHORT_LEASE, "crashed-worker")) == 3
        time.sleep(SHORT_LEASE + 0.5 + self.timing_slack)
        for _ in range(2):  # twice: one recovered job per claim of limit 1, never more
            [one] = wait_until_claimed(
                storage, "lim-expired", timeout=5 + self.timing_slack, limit=1
            )
            assert one.recovered is True

    def test_claim_respects_limit_when_expired_and_waiting_jobs_are_both_due(
        self, storage: Storage
    ) -> None:
        self.require(storage, "lease_expiry")
        queue = "lim-mixed"
        storage.add([make_envelope(queue, arguments={"i": i}) for i in range(2)])
        assert len(storage.claim(queue, 2, SHORT_LEASE, "crashed-worker")) == 2
        time.sleep(SHORT_LEASE + 0.5 + self.timing_slack)
        storage.add([make_envelope(queue, arguments={"i": i}) for i in range(2, 5)])
        # two expired leases and three waiting jobs are due: a claim of 3 takes 3, not 5
        assert len(storage.claim(queue, 3, LEASE, OWNER)) == 3
        assert len(storage.claim(queue, 3, LEASE, OWNER)) == 2

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
        env, claim = add_and_claim(storage, "readd-get")
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
        order = [c.job.id for c in drain(storage, "tie", batch=5)]
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

    def test_next_due_ignores_other_queues(self, storage: Storage) -> None:
        soon, later = utcnow() + timedelta(minutes=5), utcnow() + timedelta(hours=3)
        storage.add([make_envelope("nd-other", run_at=soon), make_envelope("nd-running")])
        storage.claim("nd-running", 1, 60, OWNER)  # a lease running out in a minute
        assert storage.next_due("nd-mine") is None
        storage.add([make_envelope("nd-mine", run_at=later)])
        due = storage.next_due("nd-mine")
        assert due is not None
        assert abs((due - later).total_seconds()) < 1.0, due

    def test_requeue_waits_for_its_run_at(self, storage: Storage) -> None:
        managed = self.require_queue_management(storage)
        env, claim = add_and_claim(storage, "rq-later")
        storage.fail(claim, attempt_error(1))
        # wide enough that a slow requeue (RabbitMQ declares its delay ladder) returns first
        not_before = utcnow() + timedelta(seconds=3 + self.timing_slack)
        assert managed.requeue(env.id, run_at=not_before) is True
        assert storage.claim("rq-later", 1, LEASE, OWNER) == []
        [again] = wait_until_claimed(storage, "rq-later", timeout=10 + self.timing_slack)
        assert again.job.id == env.id
        assert utcnow() >= not_before
        assert abs((again.job.run_at - not_before).total_seconds()) < 0.001

    def test_requeue_keeps_the_jobs_past_errors(self, storage: Storage) -> None:
        managed = self.require_queue_management(storage)
        env, claim = add_and_claim(storage, "rq-errors")
        storage.fail(claim, attempt_error(1, "the failure before the requeue"))
        assert managed.requeue(env.id) is True
        [again] = wait_until_claimed(storage, "rq-errors", timeout=5 + self.timing_slack)
        assert again.job.attempts == 1  # a fresh retry budget ...
        assert [(e.attempt, e.message) for e in again.job.errors] == [
            (1, "the failure before the requeue")  # ... and the history kept
        ]

    def test_requeued_job_is_scheduled_or_ready_by_its_run_at(self, storage: Storage) -> None:
        jobs = self.require_management(storage)
        later, now = make_envelope("rq-state"), make_envelope("rq-state")
        storage.add([later, now])
        for claim in storage.claim("rq-state", 10, LEASE, OWNER):
            storage.fail(claim, attempt_error(1))
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
