"""The 'asyncio' executor: every queue on one event loop, run on the executor's own thread.

``start_queue`` / ``stop_queue`` may be called from any thread (the shell API);
``run`` blocks the caller, drains on SIGTERM/SIGINT like the threads executor,
and in burst mode returns once no job is due.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import msgspec

from oddjob_core.engine import Executor, Runtime

from .queue_runner import QueueRunner, counter

log = logging.getLogger("oddjob.worker")


class AsyncioOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[asyncio]`` table: concurrency when a queue sets no ``workers``, and the sync-job pool."""

    concurrency: int = 100  # jobs run at once per queue (``--workers`` / the queue's workers win)
    sync_threads: int = 16  # threads running sync jobs, shared by every queue

    def __post_init__(self) -> None:
        for name in ("concurrency", "sync_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class AsyncioExecutor(Executor):
    """Runs each queue as tasks on one event loop in this process."""

    def __init__(self, runtime: Runtime, options: AsyncioOptions | None = None) -> None:
        super().__init__(runtime)
        self.options = options or AsyncioOptions()
        self._queues: dict[str, QueueRunner] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sync_pool: ThreadPoolExecutor | None = None
        self._count = counter(self.stats, self.stats_lock)

    def concurrency(self, name: str, workers: int | None = None) -> int:
        """Jobs run at once for queue ``name``: the argument, ``--workers``, its table, or 100."""
        settings = self.runtime.settings
        if workers or self.default_workers:
            return workers or self.default_workers or 0
        if name in settings.queues:
            return settings.queues[name].workers
        return self.options.concurrency

    def running_queues(self) -> Mapping[str, QueueRunner]:
        return self._queues

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=loop.run_forever, name="oddjob-asyncio-loop", daemon=True
            )
            self._thread.start()
            self._loop = loop
            self._sync_pool = ThreadPoolExecutor(
                self.options.sync_threads, thread_name_prefix="oddjob-sync"
            )
        return self._loop

    def start_queue(self, name: str, *, workers: int | None = None) -> None:
        if name in self._queues:
            raise ValueError(f"queue '{name}' is already running")
        loop = self._ensure_loop()
        assert self._sync_pool is not None
        count = self.concurrency(name, workers)
        runner = QueueRunner(self.claim_loop(name, count), self._sync_pool, self._count)
        asyncio.run_coroutine_threadsafe(runner.start(), loop).result()
        self._queues[name] = runner
        log.info("queue '%s' started with %d concurrent job(s) on the event loop", name, count)

    def stop_queue(self, name: str, timeout: float | None = None) -> None:
        runner = self._queues.pop(name, None)
        if runner is None or self._loop is None:  # stopped meanwhile by another thread
            return
        timeout = self.runtime.settings.shutdown_timeout if timeout is None else timeout
        still = asyncio.run_coroutine_threadsafe(runner.stop(timeout), self._loop).result()
        self.abandon(name, still, timeout)

    def stopped(self) -> None:
        super().stopped()
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            self._loop = self._thread = None
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            if not thread.is_alive():
                loop.close()
        if self._sync_pool is not None:
            self._sync_pool.shutdown(wait=False)
            self._sync_pool = None
