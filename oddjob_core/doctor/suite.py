"""The storage conformance suite as doctor runs it (collected by ``run.run_suite`` only).

Each test gets a fresh private namespace from the ``doctor_storage_factory``
fixture that doctor's pytest plugin provides.
"""

from __future__ import annotations

import pytest

from ..storage import Storage
from ..testing.storage_suite import StorageFactory, StorageSuite


class TestDoctorStorage(StorageSuite):
    @pytest.fixture
    def storage_factory(self, doctor_storage_factory: StorageFactory) -> StorageFactory:
        return doctor_storage_factory

    def inject_corrupt_job(self, storage: Storage, queue: str) -> None:
        pytest.skip("writing a corrupt job is backend-specific (the plugin's own tests do it)")
