"""RabbitMQ cannot store worker announcements nor count finished jobs: the suites skip visibly.

AMQP has no keyed, overwritable record (a queue of announcements could only be
read by consuming it, and queues cannot be listed without the management
plugin), and succeeded jobs are acked away, so there is nothing to count.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from oddjob_rabbitmq import RabbitStorage

from oddjob_core.testing import FinishedHistorySuite, WorkerRegistrySuite
from oddjob_core.testing.storage_suite import StorageFactory


class TestRabbitWorkerRegistry(WorkerRegistrySuite):
    @pytest.fixture
    def storage_factory(self, make_storage: Callable[..., RabbitStorage]) -> StorageFactory:
        return make_storage


class TestRabbitFinishedHistory(FinishedHistorySuite):
    @pytest.fixture
    def storage_factory(self, make_storage: Callable[..., RabbitStorage]) -> StorageFactory:
        return make_storage
