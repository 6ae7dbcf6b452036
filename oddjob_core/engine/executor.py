"""The contract every execution backend implements: run queues, stop them, drain on a signal."""

from __future__ import annotations

import abc
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from ..errors import OddjobError, StorageError
from .announcer import Announcer
from .claiming import ClaimLoop
from .leases import LeaseKeeper
from .runner import Outcome
from .runtime import Runtime
from .signals import install_drain_signals, restore_signals

log = logging.getLogger("oddjob.worker")


class RunningQueue(Protocol):
    """One queue as an executor runs it: what ``run``, the heartbeat and metrics read."""

    @property
    def workers(self) -> int:
        """Jobs it runs at once."""

    @property
    def finished(self) -> threading.Event:
        """Set once claiming ended: stopped, or the burst run found nothing more due."""

    @property
    def gave_up(self) -> Exception | None:
        """Burst only: why claiming gave up (the store kept failing)."""

    def in_flight(self) -> int:
        """Jobs claimed and not yet finished: waiting, running, or being recorded."""


class Executor(abc.ABC):
    """Runs queues: claims jobs from storage and hands each to ``runtime.runner``.

    ``stats`` counts finished attempts by outcome (for progress displays);
    implementations update it under ``stats_lock``. An implementation starts
    and stops one queue (``start_queue`` / ``stop_queue``) and lists what runs
    (``running_queues``); ``run`` and ``stop`` are built on those.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.default_workers: int | None = None  # overrides the configured workers per queue
        self.stats: Counter[Outcome] = Counter()
        self.stats_lock = threading.Lock()
        self.burst = False  # set by run(): queues started by it end when nothing is due
        self.burst_wait = 0.0
        self.abandoned = 0  # jobs still running when a queue's shutdown_timeout ran out
        self._stop_requested = threading.Event()
        self._stop_lock = threading.RLock()  # run() stops too when told to: a second stop waits
        self.leases = LeaseKeeper(runtime.storage, runtime.settings.lease)  # started by claim_loop

    @abc.abstractmethod
    def running_queues(self) -> Mapping[str, RunningQueue]:
        """The queues started and not stopped, by name."""

    def queue_workers(self) -> dict[str, int]:
        """The queues this executor runs now, each with its number of parallel workers.

        Announced by the heartbeat (``Announcer``).
        """
        return {name: q.workers for name, q in list(self.running_queues().items())}

    def in_flight(self) -> int:
        """Jobs claimed and not yet finished (announced by the heartbeat)."""
        return sum(self.in_flight_by_queue().values())

    def in_flight_by_queue(self) -> dict[str, int]:
        """``in_flight`` per queue (read by metrics at scrape time)."""
        return {name: q.in_flight() for name, q in list(self.running_queues().items())}

    def announcer(self) -> Announcer:
        """A heartbeat announcing this process while ``run`` runs: start it there, stop it after."""
        return Announcer(self)

    def processed(self) -> int:
        """Attempts finished so far, any outcome."""
        with self.stats_lock:
            return sum(self.stats.values())

    @abc.abstractmethod
    def start_queue(self, name: str, *, workers: int | None = None) -> None:
        """Start claiming and running jobs of queue ``name`` with ``workers`` in parallel."""

    @abc.abstractmethod
    def stop_queue(self, name: str, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish up to ``timeout`` s, give back unstarted claims."""

    def run(
        self,
        queues: Sequence[str] | None = None,
        *,
        burst: bool = False,
        burst_wait: float = 0.0,
        handle_signals: bool = True,
    ) -> None:
        """Start ``queues`` (default: configured ones) and block until stopped.

        ``burst``: return once no job is due (jobs due within ``burst_wait``
        seconds still count as due). ``handle_signals``: SIGTERM/SIGINT drain
        gracefully (main thread only). Raises ``StorageError`` when a burst run
        gave up claiming, and ``OddjobError`` when jobs were abandoned at
        ``shutdown_timeout``: the worker did not finish its work (exit 1).
        """
        self.burst, self.burst_wait = burst, burst_wait
        names = list(queues or self.runtime.settings.queue_names())
        gave_up: dict[str, Exception] = {}

        def collect_gave_up() -> None:
            running = self.running_queues().items()
            gave_up.update({n: q.gave_up for n, q in running if q.gave_up is not None})

        self.serve(
            names,
            self._stop_requested,
            lambda: all(q.finished.is_set() for q in self.running_queues().values()),
            handle_signals=handle_signals,
            before_stop=collect_gave_up,
        )
        if gave_up:
            raise StorageError(
                "the burst run gave up: "
                + "; ".join(f"queue '{n}': {exc}" for n, exc in gave_up.items())
            )
        if self.abandoned:
            raise OddjobError(
                f"{self.abandoned} job(s) were still running when shutdown_timeout "
                f"({self.runtime.settings.shutdown_timeout:g} s) ran out; they run again after "
                "their lease expires (raise shutdown_timeout to let them finish)"
            )

    def claim_loop(self, name: str, workers: int) -> ClaimLoop:
        """Claiming for queue ``name``, about to start: the shared rules, leases renewed."""
        self.leases.start()
        return ClaimLoop(
            name, workers, self.runtime, self.leases, burst=self.burst, burst_wait=self.burst_wait
        )

    def request_stop(self) -> None:
        """Ask ``run`` to drain and return, from any thread (what SIGTERM does)."""
        self._stop_requested.set()

    def abandon(self, name: str, still: int, timeout: float) -> None:
        """``stop_queue`` gave up waiting for ``still`` running jobs: count and log them."""
        if not still:
            return
        self.abandoned += still
        log.warning(
            "%d job(s) of queue '%s' still running after %.0f s; their leases will "
            "expire and they will run again",
            still,
            name,
            timeout,
        )

    def stop(self, timeout: float | None = None) -> None:
        """Stop every queue (from any thread); ``run`` returns afterwards.

        A second caller waits for the first; then ``stopped`` releases the rest.
        """
        self._stop_requested.set()
        with self._stop_lock:
            for name in list(self.running_queues()):
                self.stop_queue(name, timeout)
            self.stopped()

    def stopped(self) -> None:
        """Every queue has stopped: release what the executor holds (threads, loop, processes).

        Overrides call this too: it stops renewing leases.
        """
        self.leases.stop()

    def serve(
        self,
        queues: Sequence[str],
        stop_requested: threading.Event,
        finished: Callable[[], bool],
        *,
        handle_signals: bool = True,
        before_stop: Callable[[], None] | None = None,
    ) -> None:
        """``run``'s common body: start ``queues``, announce, wait until stopped or ``finished()``.

        SIGTERM/SIGINT set ``stop_requested`` (a second one exits at once);
        ``before_stop`` (if any) runs once the wait ends, then ``stop``.
        """
        settings = self.runtime.settings
        previous = (
            install_drain_signals(stop_requested, settings.shutdown_timeout)
            if handle_signals
            else {}
        )
        announcer = self.announcer()
        try:
            for name in queues:
                self.start_queue(name)
            announcer.start()
            while not stop_requested.is_set() and not finished():
                stop_requested.wait(0.1)
            if before_stop is not None:
                before_stop()
        finally:
            self.stop()
            announcer.stop()
            restore_signals(previous)
