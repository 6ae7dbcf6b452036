"""The contract every execution backend implements: run queues, stop them, drain on a signal."""

from __future__ import annotations

import abc
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from .announcer import Announcer
from .runner import Outcome
from .runtime import Runtime
from .signals import install_drain_signals, restore_signals


class Executor(abc.ABC):
    """Runs queues: claims jobs from storage and hands each to ``runtime.runner``.

    ``stats`` counts finished attempts by outcome (for progress displays);
    implementations update it under ``stats_lock``.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.default_workers: int | None = None  # overrides the configured workers per queue
        self.stats: Counter[Outcome] = Counter()
        self.stats_lock = threading.Lock()

    def queue_workers(self) -> dict[str, int]:
        """The queues this executor runs now, each with its number of parallel workers.

        Announced by the heartbeat (``Announcer``); executors override it.
        """
        return {}

    def in_flight(self) -> int:
        """Jobs claimed and not yet finished (announced by the heartbeat)."""
        return sum(self.in_flight_by_queue().values())

    def in_flight_by_queue(self) -> dict[str, int]:
        """``in_flight`` per queue (read by metrics at scrape time); executors override it."""
        return {}

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

    @abc.abstractmethod
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
        gracefully (main thread only).
        """

    @abc.abstractmethod
    def stop(self, timeout: float | None = None) -> None:
        """Stop every queue (from any thread); ``run`` returns afterwards."""

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
