"""The shipped conformance suites: subclass them in a backend's tests to get every behaviour test.

from oddjob_core.testing import StorageSuite

class TestMyStorage(StorageSuite):
    @pytest.fixture
    def storage_factory(self):
        ns = fresh_namespace()
        yield lambda: MyStorage(namespace=ns)
        drop(ns)

    def inject_corrupt_job(self, storage, queue):
        ...  # write a job the backend cannot decode
"""

from .envelopes import make_envelope
from .executor_suite import ExecutorSuite
from .services import service_unavailable
from .storage_suite import StorageSuite

__all__ = ["ExecutorSuite", "StorageSuite", "make_envelope", "service_unavailable"]
