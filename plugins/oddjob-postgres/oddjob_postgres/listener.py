"""LISTEN/NOTIFY wake-ups: one dedicated connection per storage instance, on its own thread.

Writes that make a job due now (add, retry due now, release, requeue) send
``pg_notify(channel, queue)`` in their own statement. The listener thread
records which queues were notified; ``wait`` returns as soon as one of the
waited-for queues has a pending notification. A notification that arrives
while nobody waits stays pending, so a wake-up is never lost between a claim
that found nothing and the next wait. While the listening connection is down
(server restart), ``wait`` simply sleeps its timeout: polling is the fallback,
and after reconnecting every queue is woken once, for what was missed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from .database import scrub

log = logging.getLogger("oddjob.postgres")

_POLL = 0.5  # seconds between stop checks on the listening connection
_RECONNECT_MAX = 5.0


class Listener:
    """Turns notifications on ``channel`` into per-queue wake-ups."""

    def __init__(self, dsn: str, channel: str, target: str, application_name: str) -> None:
        self._dsn = dsn
        self._channel = channel
        self._target = target
        self._application_name = application_name
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._known: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        """Start the listening thread once (idempotent)."""
        with self._cond:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._loop, name=f"oddjob-listen-{self._channel}", daemon=True
                )
                self._thread.start()

    def wait(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until one of ``queues`` is notified or ``timeout`` passes; True when notified."""
        with self._cond:
            self._known.update(queues)  # before start(): the connect wake-up must include them
        self.start()
        with self._cond:
            notified = self._cond.wait_for(
                lambda: self._stop.is_set() or any(q in self._pending for q in queues),
                timeout=max(0.0, timeout),
            )
            hit = any(q in self._pending for q in queues)
            self._pending.difference_update(queues)
            return bool(notified) and hit

    def _wake(self, queues: set[str] | None) -> None:
        with self._cond:
            self._pending.update(self._known if queues is None else queues)
            self._cond.notify_all()

    def _loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._dsn,
                    autocommit=True,
                    application_name=self._application_name,
                    connect_timeout=5,
                ) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self.connected.set()
                    self._wake(None)  # whatever was notified while we were away
                    backoff = 0.1
                    self._listen(conn)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    break
                self.connected.clear()
                log.warning(
                    "LISTEN connection to %s lost (%s); polling until it is back",
                    self._target,
                    scrub(str(exc).strip(), self._dsn),
                )
                self._stop.wait(backoff)
                backoff = min(_RECONNECT_MAX, backoff * 2)
        self.connected.clear()

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stop.is_set():
            for note in conn.notifies(timeout=_POLL):  # yields each note as it arrives
                self._wake({note.payload})
                if self._stop.is_set():
                    break

    def close(self) -> None:
        """Stop the thread and close its connection."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(_POLL * 4)
