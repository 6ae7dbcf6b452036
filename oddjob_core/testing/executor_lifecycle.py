"""The part of ``ExecutorSuite`` about a worker's life: leases, shutdown, what it announces."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from ..app import Oddjob
from ..engine.runner import Outcome
from ..enqueuing import call
from ..errors import OddjobError
from ..hookspecs import hookimpl
from ..memory.store import MemoryStorage
from ..model import Claim, JobState
from ..worker_registry import worker_registry_of
from . import targets
from .executor_suite_base import AppFactory, ExecutorSuiteBase
from .targets import SEEN
from .workers import wait_for


class ExecutorLifecycleTests(ExecutorSuiteBase):
    """Leases, shutdown and the heartbeat (collected through ``ExecutorSuite``)."""

    __test__ = False

    # -- leases -------------------------------------------------------------------------

    def test_lease_is_renewed_while_a_long_job_runs(self, app_factory: AppFactory) -> None:
        """A 3.5 s job under a 1 s lease: renewed, it runs once; not renewed, it runs again."""
        app = app_factory(lease=1.0)
        job_id = app.enqueue(targets.sleep_for, "long", 3.5)
        with self.running(app, workers=2) as executor:
            assert wait_for(lambda: executor.processed() >= 1, 30), "the job never finished"
        assert SEEN["long"] == ["start", "end"]
        record = app.get(job_id)
        assert record.state is JobState.SUCCEEDED
        assert record.envelope.attempts == 1

    def test_lost_lease_cancels_the_job_and_is_not_a_success(self, app_factory: AppFactory) -> None:
        """A store whose ``extend`` reports the lease lost: the job is cancelled, counted lost."""
        storage = LeaseLosingStorage()
        app = app_factory(lease=1.0, storage="memory", storage_instance=storage)
        succeeded: list[object] = []

        class Watcher:
            @hookimpl
            def oddjob_job_succeeded(self, claim: Any, result: Any, duration: float) -> None:
                succeeded.append(claim.job.id)

        app.registry.pm.register(Watcher())
        job_id = app.enqueue(targets.wait_for_cancel, "lost", 30.0)
        with self.running(app, workers=2) as executor:
            assert wait_for(lambda: executor.processed() >= 1, 30), "the attempt never finished"
        assert SEEN["lost"][:1] == ["cancelled"]
        assert executor.stats[Outcome.LOST] >= 1
        assert executor.stats[Outcome.SUCCEEDED] == 0
        assert succeeded == []
        assert storage.get(job_id).state is not JobState.SUCCEEDED  # type: ignore[union-attr]

    # -- shutdown and the heartbeat ---------------------------------------------------

    def test_abandoning_running_jobs_at_shutdown_timeout_is_not_a_clean_exit(
        self, app_factory: AppFactory
    ) -> None:
        """Issue #12 item 8: the worker exited 0 although jobs were left running (they rerun)."""
        app = app_factory(shutdown_timeout=0.2)
        app.enqueue(targets.sleep_for, "abandoned", 3.0)
        executor = app.make_executor()
        executor.default_workers = 1

        def sigterm_once_it_runs() -> None:
            wait_for(lambda: "start" in SEEN["abandoned"], 30)
            executor.request_stop()  # what SIGTERM does

        threading.Thread(target=sigterm_once_it_runs, daemon=True).start()
        with pytest.raises(OddjobError, match="still running when shutdown_timeout"):
            executor.run(handle_signals=False)
        assert executor.abandoned == 1

    def test_a_running_worker_is_announced_with_its_queues_and_jobs_in_flight(
        self, app: Oddjob
    ) -> None:
        """What the dashboard's Workers page and the Prometheus in-flight gauge read."""
        registry = worker_registry_of(app.storage)
        if registry is None:
            pytest.skip("the store keeps no worker registry")
        app.enqueue_many([call(targets.sleep_for, "announced", 1.0) for _ in range(3)])
        with self.running(app, workers=2) as executor:
            assert wait_for(lambda: len(registry.workers()) == 1, 30), "never announced"
            (info,) = registry.workers()
            assert info.queues == {"default": 2}
            assert info.executor == type(executor).__name__
            assert wait_for(lambda: executor.in_flight_by_queue().get("default", 0) >= 2, 30)
            assert executor.in_flight() == sum(executor.in_flight_by_queue().values())
            assert wait_for(lambda: executor.in_flight_by_queue() == {"default": 0}, 30)
            assert executor.processed() == 3
        assert registry.workers() == []  # a cleanly stopped worker withdraws at once


class LeaseLosingStorage(MemoryStorage):
    """The in-memory store, except that every lease renewal reports the lease lost."""

    def extend(self, claims: Sequence[Claim], lease: float) -> set[uuid.UUID]:
        return {claim.job.id for claim in claims}
