"""The fixtures and helpers every part of ``ExecutorSuite`` shares."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from ..app import Oddjob
from ..engine.executor import Executor
from ..model import RetryPolicy
from . import targets

FAST_RETRY = RetryPolicy(max_retries=3, min_wait=0.05, max_wait=0.2, jitter=0.0)
AppFactory = Callable[..., Oddjob]


class ExecutorSuiteBase:
    """The fixtures and helpers of ``ExecutorSuite`` (subclass that, not this)."""

    __test__ = False
    executor_name: ClassVar[str] = "threads"
    overridden_tests: ClassVar[dict[str, str]] = {}
    records_across_processes: ClassVar[bool] = False  # jobs run in child processes

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True

    @pytest.fixture
    def storage_settings(self) -> dict[str, Any]:
        """Settings that pick the store the suite runs on (override for a real backend)."""
        return {"storage": "memory"}

    @pytest.fixture
    def app_factory(
        self, storage_settings: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[AppFactory]:
        made: list[Oddjob] = []
        if self.records_across_processes:
            targets.share_across_processes(tmp_path_factory.mktemp("records"))
        targets.reset()

        def make(**overrides: Any) -> Oddjob:
            settings: dict[str, Any] = dict(
                **storage_settings,
                executor=self.executor_name,
                poll_interval=0.05,
                lease=5.0,
                allowed_prefixes=["oddjob_core.testing.targets"],
                retry=FAST_RETRY,
                shutdown_timeout=10.0,
            )
            settings.update(overrides)
            app = Oddjob(**settings)
            made.append(app)
            return app

        yield make
        for app in made:
            app.close()
        if self.records_across_processes:
            targets.share_across_processes(None)

    @pytest.fixture
    def app(self, app_factory: AppFactory) -> Oddjob:
        return app_factory()

    def drain(
        self,
        app: Oddjob,
        *,
        workers: int = 4,
        burst_wait: float = 2.0,
        queues: list[str] | None = None,
    ) -> None:
        app.run_worker(
            queues, workers=workers, burst=True, burst_wait=burst_wait, handle_signals=False
        )

    @contextlib.contextmanager
    def running(self, app: Oddjob, *, workers: int = 4) -> Iterator[Executor]:
        """Run the app's executor on a thread for the ``with`` block; stop it (drain) after."""
        executor = app.make_executor()
        executor.default_workers = workers
        thread = threading.Thread(
            target=executor.run, kwargs={"handle_signals": False}, daemon=True
        )
        thread.start()
        try:
            yield executor
        finally:
            executor.stop(timeout=10)
            thread.join(15)
        assert not thread.is_alive(), "the executor did not stop"
