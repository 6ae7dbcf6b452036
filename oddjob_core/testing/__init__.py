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

import pkgutil

import pytest

# pytest rewrites asserts only in test modules and in modules registered before their
# import. The suites live in an installed package: without this, a plugin author's
# failing suite test shows a bare AssertionError instead of the values it compared.
# Every module of this package is registered, so a new suite module is covered too.
pytest.register_assert_rewrite(*(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)))

from .envelopes import make_envelope  # noqa: E402
from .executor_suite import ExecutorSuite  # noqa: E402
from .history_suite import FinishedHistorySuite  # noqa: E402
from .services import service_unavailable  # noqa: E402
from .storage_suite import StorageSuite, closing_factory  # noqa: E402
from .worker_registry_suite import WorkerRegistrySuite, make_worker  # noqa: E402
from .worker_suite import WorkerSuite  # noqa: E402
from .workers import WorkerProcesses, make_worker_env, settings_env, wait_for  # noqa: E402

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
