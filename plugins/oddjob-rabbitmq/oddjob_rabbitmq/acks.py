"""Successes wait for their acks to be written: "outcome before hooks" holds on RabbitMQ too.

basic.ack has no reply, so the storage used to queue a success's ack for the
loop and return at once: ``job_succeeded`` could fire for a job whose ack was
then lost with its channel, and the job ran again. Now ``complete_many`` hands
its acks over with an ``AckWaiter`` and returns once the loop has written them
to the socket; an ack that could not be written (its channel closed) is
reported for its job, which RabbitMQ delivers again, and no hook fires for it.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from oddjob_core.errors import StorageError


class AckWaiter:
    """The acks of one ``complete_many`` call, and whether each was written."""

    def __init__(self, acks: list[tuple[Any, int]], ids: list[uuid.UUID]) -> None:
        self.acks = acks
        self.ids = ids
        self._done = threading.Event()
        self._unwritten: set[int] = set()

    def settle(self, failed_channels: set[int] | None) -> None:
        """Loop thread: the write is over; ``failed_channels`` (``id()``s) lost theirs (None: all)."""
        for i, (channel, _) in enumerate(self.acks):
            if failed_channels is None or id(channel) in failed_channels:
                self._unwritten.add(i)
        self._done.set()

    def errors(self, timeout: float) -> dict[uuid.UUID, StorageError]:
        """Wait for the write; the jobs whose ack was not written, each with its error."""
        if not self._done.wait(timeout):
            self._unwritten = set(range(len(self.acks)))
        return {
            self.ids[i]: StorageError(
                f"the ack of job {self.ids[i]} was not written (its channel closed or the "
                "write timed out); RabbitMQ delivers the job again"
            )
            for i in sorted(self._unwritten)
        }
