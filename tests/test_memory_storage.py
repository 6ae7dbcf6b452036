"""The in-memory store passes the storage conformance suite."""

from __future__ import annotations

import threading
import time

import pytest

from oddjob_core.clock import utcnow
from oddjob_core.memory import MemoryStorage
from oddjob_core.model import AttemptError
from oddjob_core.storage import Storage
from oddjob_core.testing import StorageSuite, make_envelope
from oddjob_core.testing.recurring_suite import RecurringSuite
from oddjob_core.testing.storage_suite import StorageFactory


class TestMemoryStorage(StorageSuite, RecurringSuite):
    @pytest.fixture
    def storage_factory(self) -> StorageFactory:
        shared = MemoryStorage()
        return lambda: shared

    def inject_corrupt_job(self, storage: Storage, queue: str) -> None:
        pytest.skip("the memory store holds decoded envelopes only; nothing can be corrupt")

    overridden_tests = {}


@pytest.mark.parametrize("action", ["add", "retry", "release", "requeue"])
def test_waiting_worker_wakes_when_work_arrives(action: str) -> None:
    """``wait_for_work`` returns as soon as a job becomes due, not after its timeout."""
    store = MemoryStorage()
    store.add([make_envelope("w")])
    [claim] = store.claim("w", 1, 30.0, "w")
    arrive = {
        "add": lambda: store.add([make_envelope("w")]),
        "retry": lambda: store.retry(
            claim,
            utcnow(),
            AttemptError(attempt=1, type="builtins.RuntimeError", message="x", at=utcnow()),
        ),
        "release": lambda: store.release([claim]),
        "requeue": lambda: (store.complete(claim, None), store.requeue(claim.job.id)),
    }[action]
    timer = threading.Timer(0.2, arrive)
    timer.start()
    started = time.monotonic()
    store.wait_for_work(["w"], 30.0)
    timer.join()
    assert time.monotonic() - started < 10


def test_waiting_on_a_quiet_queue_lasts_its_timeout() -> None:
    """No busy loop: with nothing arriving, ``wait_for_work`` sleeps its whole timeout."""
    store = MemoryStorage()
    started = time.monotonic()
    store.wait_for_work(["quiet"], 0.5)
    assert time.monotonic() - started >= 0.45
