"""Group commit: concurrent enqueues share storage writes, and none returns before it is stored."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from oddjob_core import Oddjob
from oddjob_core.errors import StorageError
from oddjob_core.group_commit import GroupCommit
from oddjob_core.model import Envelope
from oddjob_core.testing import targets
from oddjob_core.testing.envelopes import make_envelope


class SlowStore:
    """A write that takes ``pause`` seconds, records every batch, and refuses marked jobs."""

    def __init__(self, pause: float = 0.02) -> None:
        self.pause = pause
        self.batches: list[list[Envelope]] = []
        self.stored: set[object] = set()
        self.refused: set[object] = set()
        self.lock = threading.Lock()

    def write(self, jobs: Sequence[Envelope]) -> None:
        time.sleep(self.pause)
        if any(job.id in self.refused for job in jobs):
            raise StorageError("a job in this write was refused")
        with self.lock:
            self.batches.append(list(jobs))
            self.stored.update(job.id for job in jobs)


def run_threads(commit: GroupCommit, store: SlowStore, jobs: list[Envelope]) -> dict[int, object]:
    """One thread per job; each checks its job is stored the moment ``add`` returns."""
    outcome: dict[int, object] = {}
    start = threading.Barrier(len(jobs))

    def produce(k: int, job: Envelope) -> None:
        start.wait()
        try:
            commit.add([job])
            outcome[k] = job.id in store.stored  # durable when add returned
        except StorageError as exc:
            outcome[k] = exc

    threads = [threading.Thread(target=produce, args=(k, j)) for k, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a producer never returned"
    return outcome


def test_concurrent_callers_share_writes_and_each_returns_stored() -> None:
    store = SlowStore()
    commit = GroupCommit(store.write)
    jobs = [make_envelope() for _ in range(32)]
    outcome = run_threads(commit, store, jobs)
    assert outcome == dict.fromkeys(range(32), True)
    assert store.stored == {job.id for job in jobs}
    assert commit.writes <= 8, f"32 concurrent callers took {commit.writes} writes"
    assert max(len(b) for b in store.batches) > 1


def test_a_lone_caller_writes_at_once_every_time() -> None:
    store = SlowStore(pause=0)
    commit = GroupCommit(store.write)
    for _ in range(5):
        commit.add([make_envelope()])
    assert commit.writes == 5
    assert [len(b) for b in store.batches] == [1] * 5


def test_a_refused_job_fails_only_its_own_caller() -> None:
    store = SlowStore()
    commit = GroupCommit(store.write)
    jobs = [make_envelope() for _ in range(12)]
    store.refused.add(jobs[5].id)
    outcome = run_threads(commit, store, jobs)
    assert isinstance(outcome.pop(5), StorageError)
    assert outcome == {k: True for k in range(12) if k != 5}
    assert jobs[5].id not in store.stored


def test_batches_stay_under_the_job_limit() -> None:
    store = SlowStore()
    commit = GroupCommit(store.write, max_jobs=4)
    run_threads(commit, store, [make_envelope() for _ in range(24)])
    assert max(len(b) for b in store.batches) <= 4
    assert len(store.stored) == 24


def test_async_callers_on_one_loop_share_writes() -> None:
    store = SlowStore()
    commit = GroupCommit(store.write)
    jobs = [make_envelope() for _ in range(100)]

    async def main() -> list[bool]:
        async def one(job: Envelope) -> bool:
            await commit.add_async([job])
            return job.id in store.stored

        return await asyncio.gather(*(one(job) for job in jobs))

    assert asyncio.run(asyncio.wait_for(main(), 30)) == [True] * 100
    assert commit.writes <= 10, f"100 concurrent tasks took {commit.writes} writes"


def test_a_cancelled_waiter_does_not_stall_the_others() -> None:
    store = SlowStore(pause=0.2)
    commit = GroupCommit(store.write)

    async def main() -> None:
        first = asyncio.ensure_future(commit.add_async([make_envelope()]))
        await asyncio.sleep(0.05)  # first is writing; the next ones queue behind it
        doomed = asyncio.ensure_future(commit.add_async([make_envelope()]))
        later = asyncio.ensure_future(commit.add_async([make_envelope()]))
        await asyncio.sleep(0.01)
        doomed.cancel()
        await asyncio.wait_for(asyncio.gather(first, later), 10)
        with pytest.raises(asyncio.CancelledError):
            await doomed
        await asyncio.wait_for(commit.add_async([make_envelope()]), 10)

    asyncio.run(main())
    assert len(store.stored) == 4  # the cancelled caller's job was written all the same


def test_threads_enqueuing_through_the_app_share_filesystem_writes(tmp_path: object) -> None:
    with Oddjob(storage="filesystem", filesystem={"path": str(tmp_path)}) as app:
        barrier = threading.Barrier(16)
        ids: list[object] = []

        def produce() -> None:
            barrier.wait()
            for i in range(5):
                ids.append(app.enqueue(targets.noop, i))

        threads = [threading.Thread(target=produce) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(ids) == 80
        assert app.counts()["default"]["ready"] == 80
        assert app.writer.writes < 80


def test_a_forked_child_gets_a_storage_and_writer_of_its_own(tmp_path: Path) -> None:
    """The parent's storage (connections, threads, locks) is dropped unclosed in a fork;
    a storage the caller passed in (``storage_instance``) is the caller's and is kept."""
    import os

    from oddjob_core.memory.store import MemoryStorage

    app = Oddjob(storage="filesystem", filesystem={"path": str(tmp_path)})
    given = MemoryStorage()
    passed = Oddjob(storage_instance=given)
    parent_storage, parent_writer = app.storage, app.writer
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        ok = (
            app.storage is not parent_storage
            and app.writer is not parent_writer
            and passed.storage is given
        )
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert app.storage is parent_storage  # the parent keeps its own
    assert app.writer is parent_writer
    app.close()
