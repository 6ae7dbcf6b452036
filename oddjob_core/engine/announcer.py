"""The worker's heartbeat: announce this process in the store while its executor runs."""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from ..clock import utcnow
from ..errors import StorageError
from ..worker_registry import WorkerInfo, worker_registry_of

if TYPE_CHECKING:
    from .executor import Executor

log = logging.getLogger("oddjob.worker")

HEARTBEAT_EVERY = 10.0  # seconds between announcements
EXPIRES_AFTER = 3  # heartbeats an announcement outlives (a dead worker vanishes after ~30 s)


class Announcer:
    """A daemon thread that announces ``executor``'s process every ``every`` seconds.

    Does nothing when the storage cannot store announcements. A failed write is
    logged and tried again on the next beat: the heartbeat never stops a worker.
    ``stop`` withdraws the announcement, so a cleanly stopped worker leaves at once.
    """

    def __init__(self, executor: Executor, every: float = HEARTBEAT_EVERY) -> None:
        self.executor = executor
        self.registry = worker_registry_of(executor.runtime.storage)
        self.every = every
        self.started_at = utcnow()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def info(self) -> WorkerInfo:
        """This process as it stands now."""
        now = utcnow()
        return WorkerInfo(
            id=self.executor.runtime.owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.executor.queue_workers(),
            in_flight=self.executor.in_flight(),
            started_at=self.started_at,
            heartbeat_at=now,
            expires_at=now + timedelta(seconds=self.every * EXPIRES_AFTER),
            executor=type(self.executor).__name__,
        )

    def beat(self) -> None:
        """Announce once now (errors logged, never raised)."""
        if self.registry is None:
            return
        try:
            self.registry.announce(self.info())
        except StorageError as exc:
            log.warning("could not announce this worker (will try again): %s", exc)

    def start(self) -> None:
        if self.registry is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="oddjob-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.beat()
        while not self._stop.wait(self.every):
            self.beat()

    def stop(self) -> None:
        """Stop beating and withdraw the announcement."""
        self._stop.set()
        if self._thread is None or self.registry is None:
            return
        self._thread.join(self.every + 5)
        self._thread = None
        try:
            self.registry.withdraw(self.executor.runtime.owner)
        except StorageError as exc:
            log.warning("could not withdraw this worker's announcement (it expires): %s", exc)
