"""The filesystem store keeps worker announcements; it does not count finished jobs per minute."""

from __future__ import annotations

from pathlib import Path

import pytest
from oddjob_filesystem import FilesystemOptions, FilesystemStorage

from oddjob_core.testing import FinishedHistorySuite, WorkerRegistrySuite, make_worker
from oddjob_core.testing.storage_suite import StorageFactory


@pytest.fixture
def factory(tmp_path: Path) -> StorageFactory:
    options = FilesystemOptions(path=str(tmp_path / "store"), refresh_interval=0.05)
    return lambda: FilesystemStorage(options)


class TestFilesystemWorkerRegistry(WorkerRegistrySuite):
    @pytest.fixture
    def storage_factory(self, factory: StorageFactory) -> StorageFactory:
        return factory


class TestFilesystemFinishedHistory(FinishedHistorySuite):
    """Skips visibly: finished_at lives inside each job file, so counting would read them all."""

    @pytest.fixture
    def storage_factory(self, factory: StorageFactory) -> StorageFactory:
        return factory


def test_a_corrupt_announcement_is_dropped_not_fatal(tmp_path: Path) -> None:
    store = FilesystemStorage(FilesystemOptions(path=str(tmp_path)))
    store.announce(make_worker("good"))
    (tmp_path / "workers" / "garbage.json").write_bytes(b"\x00not json")
    assert [w.id for w in store.workers()] == ["good"]
    assert sorted(p.name for p in (tmp_path / "workers").iterdir()) == [
        store.worker_file("good").name
    ]
