"""The 'threads' executor: start/stop queues, drain on SIGTERM/SIGINT, burst mode."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from oddjob_core.engine import Executor, LeaseKeeper, Runtime
from oddjob_core.errors import OddjobError, StorageError

from .coordinator import QueueCoordinator, Slot

log = logging.getLogger("oddjob.worker")


class ThreadsExecutor(Executor):
    """Runs each queue with a coordinator thread and N worker threads in this process."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self._leases = LeaseKeeper(runtime.storage, runtime.settings.lease)
        self._queues: dict[str, QueueCoordinator] = {}
        self._burst = False
        self._burst_wait = 0.0
        self._stop_requested = threading.Event()
        self.abandoned = 0  # jobs still running when a queue's shutdown_timeout ran out
        self._stop_lock = threading.RLock()  # run() stops too when told to: a second stop waits
        self._started = False

    def start_queue(self, name: str, *, workers: int | None = None) -> None:
        if name in self._queues:
            raise ValueError(f"queue '{name}' is already running")
        if not self._started:
            self._leases.start()
            self._started = True
        count = workers or self.default_workers or self.runtime.settings.queue(name).workers
        coordinator = QueueCoordinator(
            name,
            count,
            self.runtime,
            self._leases,
            self.stats,
            self.stats_lock,
            burst=self._burst,
            burst_wait=self._burst_wait,
            slots=self.slots(name),
        )
        self._queues[name] = coordinator
        coordinator.start()
        log.info("queue '%s' started with %d worker(s)", name, count)

    def slots(self, queue: str) -> Callable[[], Slot] | None:
        """Where worker threads run jobs: None, on themselves (subclasses run them elsewhere)."""
        return None

    def queue_workers(self) -> dict[str, int]:
        return {name: q.workers for name, q in list(self._queues.items())}

    def in_flight_by_queue(self) -> dict[str, int]:
        return {name: q.in_flight() for name, q in list(self._queues.items())}

    def stop_queue(self, name: str, timeout: float | None = None) -> None:
        coordinator = self._queues.pop(name, None)
        if coordinator is None:  # stopped meanwhile by another thread (stop() races run())
            return
        coordinator.request_stop()
        timeout = self.runtime.settings.shutdown_timeout if timeout is None else timeout
        still = coordinator.join(timeout)
        if still:
            self.abandoned += still
            log.warning(
                "%d job(s) of queue '%s' still running after %.0f s; their leases will "
                "expire and they will run again",
                still,
                name,
                timeout,
            )

    def run(
        self,
        queues: Sequence[str] | None = None,
        *,
        burst: bool = False,
        burst_wait: float = 0.0,
        handle_signals: bool = True,
    ) -> None:
        self._burst, self._burst_wait = burst, burst_wait
        names = list(queues or self.runtime.settings.queue_names())
        gave_up: dict[str, object] = {}

        def collect_gave_up() -> None:
            gave_up.update({n: q.gave_up for n, q in self._queues.items() if q.gave_up is not None})

        self.serve(
            names,
            self._stop_requested,
            lambda: all(q.finished.is_set() for q in self._queues.values()),
            handle_signals=handle_signals,
            before_stop=collect_gave_up,
        )
        if gave_up:
            raise StorageError(
                "the burst run gave up: "
                + "; ".join(f"queue '{n}': {exc}" for n, exc in gave_up.items())
            )
        if self.abandoned:  # the worker did not finish its work: not a clean exit (exit 1)
            raise OddjobError(
                f"{self.abandoned} job(s) were still running when shutdown_timeout "
                f"({self.runtime.settings.shutdown_timeout:g} s) ran out; they run again after "
                "their lease expires (raise shutdown_timeout to let them finish)"
            )

    def stop(self, timeout: float | None = None) -> None:
        self._stop_requested.set()
        with self._stop_lock:
            for name in list(self._queues):
                self.stop_queue(name, timeout)
            self._leases.stop()
