"""Conformance tests of the management interfaces (``QueueManagement``, ``JobManagement``).

Part of ``StorageSuite``; a backend that implements neither skips them visibly.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from ..clock import utcnow
from ..model import Envelope, JobQuery, JobState
from ..storage import Storage
from .envelopes import make_envelope
from .suite_base import (
    LEASE,
    OWNER,
    SuiteBase,
    add_and_claim,
    attempt_error,
    drain,
    wait_until_claimed,
)


class ManagementTests(SuiteBase):
    """get, search, counts, cancel, requeue, purge, delete."""

    __test__ = False

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
        first, second, _ = drain(storage, "c3")
        storage.complete(first, None)
        storage.fail(second, attempt_error(1))
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
        env, claim = add_and_claim(storage, "requeue")
        storage.fail(claim, attempt_error(1))
        assert managed.requeue(env.id) is True
        [again] = wait_until_claimed(storage, "requeue", timeout=5 + self.timing_slack)
        assert again.job.id == env.id
        assert again.job.attempts == 1
        assert managed.requeue(env.id) is False  # running now
        assert managed.requeue(uuid.uuid4()) is False

    @staticmethod
    def _one_done_one_waiting(storage: Storage, queue: str) -> tuple[Envelope, Envelope]:
        """A succeeded job and one waiting ten minutes ahead, in ``queue``."""
        done, waiting = make_envelope(queue), make_envelope(queue, delay=600)
        storage.add([done, waiting])
        [claim] = storage.claim(queue, 10, LEASE, OWNER)
        storage.complete(claim, None)
        return done, waiting

    def test_purge_deletes_old_finished_jobs_only(self, storage: Storage) -> None:
        managed = self.require_queue_management(storage)
        self._one_done_one_waiting(storage, "purge")
        assert managed.purge([JobState.SUCCEEDED], older_than=utcnow() - timedelta(hours=1)) == 0
        assert managed.purge([JobState.SUCCEEDED], queue="elsewhere") == 0
        assert managed.purge([JobState.SUCCEEDED], older_than=utcnow() + timedelta(seconds=1)) == 1
        with pytest.raises(ValueError, match="only succeeded, failed or cancelled"):
            managed.purge([JobState.SCHEDULED])

    def test_purged_job_is_gone_and_waiting_jobs_stay(self, storage: Storage) -> None:
        jobs = self.require_management(storage)
        done, waiting = self._one_done_one_waiting(storage, "purge-get")
        assert jobs.purge([JobState.SUCCEEDED], older_than=utcnow() + timedelta(seconds=1)) == 1
        assert jobs.get(done.id) is None
        assert jobs.get(waiting.id) is not None

    def test_delete_removes_waiting_and_finished_jobs_from_get_search_and_counts(
        self, storage: Storage
    ) -> None:
        jobs = self.require_management(storage)
        self.require(storage, "keeps_finished")
        done, failed = make_envelope("delete"), make_envelope("delete")
        ready, later = make_envelope("delete"), make_envelope("delete", delay=600)
        storage.add([done, failed])
        first, second = drain(storage, "delete")
        storage.complete(first, None)
        storage.fail(second, attempt_error(1))
        kept = make_envelope("delete", delay=600)
        storage.add([ready, later, kept])
        for job in (first.job, second.job, ready, later):
            assert jobs.delete(job.id) is True, job.id
            assert jobs.get(job.id) is None
        page = jobs.search(JobQuery(queue="delete"))
        assert [j.id for j in page.jobs] == [kept.id]
        assert page.total == 1
        assert jobs.counts("delete") == {"delete": {JobState.SCHEDULED: 1}}

    def test_delete_refuses_a_running_job_and_its_worker_still_records_the_outcome(
        self, storage: Storage
    ) -> None:
        jobs = self.require_management(storage)
        env = make_envelope("delete-running")
        storage.add([env])
        [claim] = storage.claim("delete-running", 1, LEASE, OWNER)
        assert jobs.delete(env.id) is False
        running = jobs.get(env.id)
        assert running is not None
        assert running.state is JobState.RUNNING
        assert storage.extend([claim], LEASE) == set()
        storage.complete(claim, "kept")  # no LeaseLost: the job was left alone

    def test_delete_of_an_unknown_or_already_deleted_id_is_false(self, storage: Storage) -> None:
        jobs = self.require_management(storage)
        env = make_envelope("delete-twice", delay=600)
        storage.add([env])
        assert jobs.delete(uuid.uuid4()) is False
        assert jobs.delete(env.id) is True
        assert jobs.delete(env.id) is False

    def test_deleted_waiting_jobs_are_never_claimed_and_not_due(self, storage: Storage) -> None:
        jobs = self.require_management(storage)
        now_job, later_job = make_envelope("delete-due"), make_envelope("delete-due", delay=600)
        storage.add([now_job, later_job])
        assert jobs.delete(now_job.id) is True
        assert jobs.delete(later_job.id) is True
        assert storage.claim("delete-due", 10, LEASE, OWNER) == []
        assert storage.next_due("delete-due") is None
