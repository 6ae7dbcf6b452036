"""The threads executor passes the execution conformance suite."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

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
