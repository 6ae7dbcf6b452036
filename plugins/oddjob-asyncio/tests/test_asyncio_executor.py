"""The asyncio executor passes the execution conformance suite, on memory and on the filesystem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oddjob_core.testing import ExecutorSuite


class TestAsyncioExecutor(ExecutorSuite):
    executor_name = "asyncio"


class TestAsyncioExecutorOnFilesystem(ExecutorSuite):
    executor_name = "asyncio"

    @pytest.fixture
    def storage_settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"storage": "filesystem", "filesystem": {"path": str(tmp_path / "store")}}
