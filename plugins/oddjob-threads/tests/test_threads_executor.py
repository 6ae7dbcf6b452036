"""The threads executor passes the execution conformance suite."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from oddjob_core import Oddjob, call
from oddjob_core.errors import LeaseLost, StorageError
from oddjob_core.hookspecs import hookimpl
from oddjob_core.memory.store import MemoryStorage
from oddjob_core.model import Claim, JobState
from oddjob_core.testing import ExecutorSuite, targets


class TestThreadsExecutor(ExecutorSuite):
    executor_name = "threads"


class SlowRecordingStorage(MemoryStorage):
    """The in-memory store with a slow success write, like a database round trip."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def complete(self, claim: Claim, result: Any = None) -> None:
        time.sleep(0.02)
        super().complete(claim, result)

    def complete_many(self, done: Sequence[tuple[Claim, Any]]) -> dict[uuid.UUID, StorageError]:
        self.batches.append(len(done))
        time.sleep(0.02)
        errors: dict[uuid.UUID, StorageError] = {}
        for claim, result in done:
            try:
                super().complete(claim, result)
            except LeaseLost as exc:
                errors[claim.job.id] = exc
        return errors


def test_successes_are_recorded_in_batches_while_a_write_is_slow() -> None:
    """Workers hand successes to the recorder: a slow write collects the next batch meanwhile."""
    storage = SlowRecordingStorage()
    app = Oddjob(
        storage_instance=storage,
        poll_interval=0.05,
        allowed_prefixes=["oddjob_core.testing.targets"],
    )
    targets.reset()
    ids = app.enqueue_many([call(targets.echo, "batched", i) for i in range(200)])
    succeeded: list[tuple[uuid.UUID, JobState | None]] = []

    class Watcher:
        @hookimpl
        def oddjob_job_succeeded(self, claim: Claim, result: Any, duration: float) -> None:
            record = storage.get(claim.job.id)  # hooks run only after the write landed
            succeeded.append((claim.job.id, record.state if record else None))

    app.registry.pm.register(Watcher())
    app.run_worker(workers=8, burst=True, handle_signals=False)
    assert sorted(i for i, _ in succeeded) == sorted(ids)  # each announced once
    assert {state for _, state in succeeded} == {JobState.SUCCEEDED}
    assert sorted(targets.SEEN["batched"]) == list(range(200))
    # 200 jobs at 20 ms per write: one write per job would take 4 s; batches form instead
    assert max(storage.batches) > 1
    assert len(storage.batches) < 100
    app.close()


class StallingStorage(MemoryStorage):
    """The first claim returns only after its lease has run out (a process SIGSTOPped or
    starved between claiming and starting); every later claim is normal."""

    def __init__(self, stall: float) -> None:
        super().__init__()
        self.stall = stall
        self.stalled: list[uuid.UUID] = []

    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        claims = super().claim(queue, limit, lease, owner)
        if claims and not self.stalled:
            self.stalled = [c.job.id for c in claims]
            time.sleep(self.stall)
        return claims


def test_claims_whose_lease_ran_out_before_they_started_are_not_started() -> None:
    """Issue #12 item 5: a worker resumed past its lease knows those jobs are no longer its
    own; starting them made certain duplicates (another worker claims them too)."""
    storage = StallingStorage(stall=1.5)
    app = Oddjob(
        storage_instance=storage,
        poll_interval=0.05,
        lease=1.0,
        allowed_prefixes=["oddjob_core.testing.targets"],
    )
    targets.reset()
    ids = app.enqueue_many([call(targets.echo, "stalled", i) for i in range(4)])
    app.run_worker(burst=True, burst_wait=2.0, workers=2, handle_signals=False)
    assert storage.stalled  # the first claim did stall
    assert sorted(targets.SEEN["stalled"]) == [0, 1, 2, 3]  # each ran once: no duplicate
    for job_id in ids:
        record = storage.get(job_id)
        assert record is not None
        assert record.state is JobState.SUCCEEDED
        assert record.envelope.attempts == 2  # the stale claim counted, never ran


class LostDeliveryStorage(MemoryStorage):
    """A store whose leases are deliveries (RabbitMQ-like): extend() reports a lost channel."""

    capabilities = MemoryStorage.capabilities.__class__(
        **{**msgspec.structs.asdict(MemoryStorage.capabilities), "lease_expiry": False}
    )

    def __init__(self) -> None:
        super().__init__()
        self.dead: set[uuid.UUID] = set()

    def extend(self, claims: Sequence[Claim], lease: float) -> set[uuid.UUID]:
        return {c.job.id for c in claims if c.job.id in self.dead} | super().extend(claims, lease)


def test_a_claim_whose_delivery_was_lost_is_not_started() -> None:
    """Issue #12 item 5, RabbitMQ's case: a store without lease expiry is asked before start."""
    storage = LostDeliveryStorage()
    app = Oddjob(storage_instance=storage, poll_interval=0.05, allowed_prefixes=[targets.__name__])
    targets.reset()
    ids = app.enqueue_many([call(targets.echo, "delivery", i) for i in range(3)])
    storage.dead.add(ids[1])
    app.run_worker(burst=True, workers=1, handle_signals=False)
    assert sorted(targets.SEEN["delivery"]) == [0, 2]
