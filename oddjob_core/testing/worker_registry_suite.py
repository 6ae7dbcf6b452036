"""Conformance tests for worker announcements (``oddjob_core.worker_registry.WorkerRegistry``).

Subclass ``WorkerRegistrySuite`` with the same ``storage_factory`` fixture as
``StorageSuite``. A backend that does not implement ``WorkerRegistry`` gets one
visible skip per test, naming the backend, instead of a silent pass.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from typing import Any

import pytest

from ..clock import utcnow
from ..storage import Storage
from ..worker_registry import WorkerInfo, WorkerRegistry, worker_registry_of
from .suite_base import OptionalInterfaceSuite, StorageFactory, skip_unless


def make_worker(worker_id: str, *, ttl: float = 60.0, **fields: Any) -> WorkerInfo:
    """An announcement of this process, valid for ``ttl`` seconds from now."""
    now = utcnow()
    values: dict[str, Any] = {
        "id": worker_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "queues": {"default": 4, "mail": 2},
        "in_flight": 3,
        "started_at": now - timedelta(minutes=5),
        "heartbeat_at": now,
        "expires_at": now + timedelta(seconds=ttl),
        "executor": "ThreadsExecutor",
    }
    values.update(fields)
    return WorkerInfo(**values)


class WorkerRegistrySuite(OptionalInterfaceSuite):
    """Announce, list, replace, withdraw and expire worker announcements."""

    __test__ = False  # collected through subclasses only

    @pytest.fixture
    def registry(self, storage: Storage) -> WorkerRegistry:
        return self.require_registry(storage)

    @staticmethod
    def require_registry(storage: Storage) -> WorkerRegistry:
        return skip_unless(
            worker_registry_of(storage), storage, "cannot store worker announcements"
        )

    def test_an_announced_worker_is_listed_with_every_field(self, registry: WorkerRegistry) -> None:
        worker = make_worker("w-1")
        registry.announce(worker)
        [listed] = registry.workers()
        assert listed.id == "w-1"
        assert listed.host == worker.host
        assert listed.pid == worker.pid
        assert listed.queues == {"default": 4, "mail": 2}
        assert listed.in_flight == 3
        assert listed.executor == "ThreadsExecutor"
        for name in ("started_at", "heartbeat_at", "expires_at"):
            got, sent = getattr(listed, name), getattr(worker, name)
            assert got.utcoffset() == timedelta(0), name
            assert abs((got - sent).total_seconds()) < 0.001, name

    def test_a_heartbeat_replaces_the_previous_announcement(self, registry: WorkerRegistry) -> None:
        registry.announce(make_worker("w-1", in_flight=1))
        registry.announce(make_worker("w-1", in_flight=7, queues={"default": 8}))
        [listed] = registry.workers()
        assert listed.in_flight == 7
        assert listed.queues == {"default": 8}

    def test_workers_are_listed_by_host_then_pid(self, registry: WorkerRegistry) -> None:
        registry.announce(make_worker("c", host="b-host", pid=1))
        registry.announce(make_worker("a", host="a-host", pid=20))
        registry.announce(make_worker("b", host="a-host", pid=3))
        assert [w.id for w in registry.workers()] == ["b", "a", "c"]

    def test_a_withdrawn_worker_is_gone_and_unknown_ids_are_ignored(
        self, registry: WorkerRegistry
    ) -> None:
        registry.announce(make_worker("stays"))
        registry.announce(make_worker("leaves"))
        registry.withdraw("leaves")
        registry.withdraw("never-announced")
        assert [w.id for w in registry.workers()] == ["stays"]

    def test_an_expired_announcement_is_not_listed(self, registry: WorkerRegistry) -> None:
        registry.announce(make_worker("dead", ttl=0.3))
        registry.announce(make_worker("alive"))
        time.sleep(0.5)
        assert [w.id for w in registry.workers()] == ["alive"]

    def test_announcements_are_seen_by_another_instance(
        self, storage_factory: StorageFactory
    ) -> None:
        first, second = storage_factory(), storage_factory()
        try:
            if not first.capabilities.shared_between_processes:
                pytest.skip(f"storage '{first.name}' is not shared between processes")
            self.require_registry(first).announce(make_worker("elsewhere"))
            assert [w.id for w in self.require_registry(second).workers()] == ["elsewhere"]
        finally:
            first.close()
            second.close()
