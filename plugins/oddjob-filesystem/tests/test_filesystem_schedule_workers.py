"""Real worker processes on one filesystem store: a killed worker's job reruns; every tick runs once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oddjob_filesystem import FilesystemOptions, FilesystemStorage

from oddjob_core.testing import WorkerSuite
from oddjob_core.testing.schedule_suite import ScheduleWorkerSuite


@pytest.fixture
def worker_settings(tmp_path: Path) -> dict[str, Any]:
    return {"storage": "filesystem", "filesystem": {"path": str(tmp_path / "store")}}


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[FilesystemStorage]:
    with FilesystemStorage(FilesystemOptions(path=str(tmp_path / "store"))) as store:
        yield store


class TestFilesystemWorkers(WorkerSuite, ScheduleWorkerSuite):
    pass
