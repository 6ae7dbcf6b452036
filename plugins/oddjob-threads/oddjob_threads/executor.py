"""The 'threads' executor: a coordinator thread and N worker threads per queue."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from oddjob_core.engine import Executor, Runtime

from .coordinator import QueueCoordinator, Slot

log = logging.getLogger("oddjob.worker")


class ThreadsExecutor(Executor):
    """Runs each queue with a coordinator thread and N worker threads in this process."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self._queues: dict[str, QueueCoordinator] = {}

    def running_queues(self) -> Mapping[str, QueueCoordinator]:
        return self._queues

    def start_queue(self, name: str, *, workers: int | None = None) -> None:
        if name in self._queues:
            raise ValueError(f"queue '{name}' is already running")
        count = self.workers_for(name, workers)
        coordinator = QueueCoordinator(
            self.claim_loop(name, count), self.stats, self.stats_lock, slots=self.slots(name)
        )
        self._queues[name] = coordinator
        coordinator.start()
        log.info("queue '%s' started with %d worker(s)", name, count)

    def workers_for(self, name: str, workers: int | None = None) -> int:
        """Worker threads for queue ``name``: the argument, ``--workers``, or its setting."""
        return workers or self.default_workers or self.runtime.settings.queue(name).workers

    def slots(self, queue: str) -> Callable[[], Slot] | None:
        """Where worker threads run jobs: None, on themselves (subclasses run them elsewhere)."""
        return None

    def stop_queue(self, name: str, timeout: float | None = None) -> None:
        coordinator = self._queues.pop(name, None)
        if coordinator is None:  # stopped meanwhile by another thread (stop() races run())
            return
        coordinator.request_stop()
        timeout = self.runtime.settings.shutdown_timeout if timeout is None else timeout
        self.abandon(name, coordinator.join(timeout), timeout)
