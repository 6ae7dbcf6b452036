"""The 'threads' executor: start/stop queues, drain on SIGTERM/SIGINT, burst mode."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from oddjob_core.engine import Executor, LeaseKeeper, Runtime
from oddjob_core.errors import OddjobError, StorageError

from .coordinator import QueueCoordinator

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
        )
        self._queues[name] = coordinator
        coordinator.start()
        log.info("queue '%s' started with %d worker(s)", name, count)

    def queue_workers(self) -> dict[str, int]:
        return {name: q.workers for name, q in list(self._queues.items())}

    def in_flight(self) -> int:
        return sum(q.in_flight() for q in list(self._queues.values()))

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
        previous = self._install_signals() if handle_signals else {}
        announcer = self.announcer()
        try:
            for name in names:
                self.start_queue(name)
            announcer.start()
            while not self._stop_requested.is_set():
                if all(q.finished.is_set() for q in self._queues.values()):
                    break
                self._stop_requested.wait(0.1)
            gave_up = {n: q.gave_up for n, q in self._queues.items() if q.gave_up is not None}
        finally:
            self.stop()
            announcer.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
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
        for name in list(self._queues):
            self.stop_queue(name, timeout)
        self._leases.stop()

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}

        def handle(signum: int, frame: FrameType | None) -> None:
            if self._stop_requested.is_set():
                # second signal: exit now; running jobs run again once their leases expire
                log.warning(
                    "received %s again: exiting without waiting for running jobs",
                    signal.Signals(signum).name,
                )
                os._exit(128 + signum)
            log.info(
                "received %s: finishing running jobs (up to %.0f s), then exiting",
                signal.Signals(signum).name,
                self.runtime.settings.shutdown_timeout,
            )
            self._stop_requested.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, handle)
        return previous
