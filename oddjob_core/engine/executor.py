"""The contract every execution backend implements (the seed's JobExecutorShell)."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from .runtime import Runtime


class Executor(abc.ABC):
    """Runs queues: claims jobs from storage and hands each to ``runtime.runner``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

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
