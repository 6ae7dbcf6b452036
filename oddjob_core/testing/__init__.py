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

Backends that several processes share subclass ``WorkerSuite`` too: real
``oddjob worker`` processes, one SIGKILLed. Further process tests (a server
restart, throughput) use its ``workers`` fixture (``WorkerProcesses``),
``wait_for`` and the job targets of ``oddjob_core.testing.targets``
(``append_line``, ``hang_while_flag``); ``settings_env`` and ``make_worker_env``
build a worker's environment outside the suite.
"""

from .envelopes import make_envelope
from .executor_suite import ExecutorSuite
from .history_suite import FinishedHistorySuite
from .services import service_unavailable
from .storage_suite import StorageSuite, closing_factory
from .worker_registry_suite import WorkerRegistrySuite, make_worker
from .worker_suite import WorkerSuite
from .workers import WorkerProcesses, make_worker_env, settings_env, wait_for

__all__ = [
    "ExecutorSuite",
    "FinishedHistorySuite",
    "StorageSuite",
    "WorkerProcesses",
    "WorkerRegistrySuite",
    "WorkerSuite",
    "closing_factory",
    "make_envelope",
    "make_worker",
    "make_worker_env",
    "service_unavailable",
    "settings_env",
    "wait_for",
]
