"""The in-memory store passes the storage conformance suite."""

from __future__ import annotations

import pytest

from oddjob_core.memory import MemoryStorage
from oddjob_core.storage import Storage
from oddjob_core.testing import StorageSuite
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
