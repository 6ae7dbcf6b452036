"""Worker announcements: the memory store passes the registry suite; a running worker heartbeats."""

from __future__ import annotations

import threading

import pytest

from oddjob_core import Oddjob
from oddjob_core.engine.announcer import Announcer
from oddjob_core.memory import MemoryStorage
from oddjob_core.testing import FinishedHistorySuite, WorkerRegistrySuite, wait_for
from oddjob_core.testing.storage_suite import StorageFactory
from oddjob_core.worker_registry import worker_registry_of


class TestMemoryWorkerRegistry(WorkerRegistrySuite):
    @pytest.fixture
    def storage_factory(self) -> StorageFactory:
        shared = MemoryStorage()
        return lambda: shared


def test_a_running_worker_announces_itself_and_withdraws_when_stopped() -> None:
    storage = MemoryStorage()
    app = Oddjob(storage_instance=storage, storage="memory", queues={"beat": {"workers": 3}})
    executor = app.make_executor()
    runner = threading.Thread(
        target=executor.run, kwargs={"queues": ["beat"], "handle_signals": False}
    )
    runner.start()
    try:
        assert wait_for(lambda: bool(storage.workers()), timeout=20)
        [worker] = storage.workers()
        assert worker.id == executor.runtime.owner
        assert worker.queues == {"beat": 3}
        assert worker.in_flight == 0
        assert worker.heartbeat_at < worker.expires_at
    finally:
        executor.stop(timeout=10)
        runner.join(30)
    assert storage.workers() == []


def test_an_announcer_on_a_store_without_a_registry_does_nothing() -> None:
    class Plain:
        pass

    app = Oddjob(storage="memory")
    executor = app.make_executor()
    executor.runtime.storage = Plain()  # type: ignore[assignment]
    announcer = Announcer(executor)
    assert worker_registry_of(executor.runtime.storage) is None
    announcer.start()
    announcer.beat()
    announcer.stop()


class TestMemoryFinishedHistory(FinishedHistorySuite):
    @pytest.fixture
    def storage_factory(self) -> StorageFactory:
        shared = MemoryStorage()
        return lambda: shared
