"""What waits in each delay ladder: the jobs this instance scheduled, and a cached count.

A queue cannot be searched by time, so ``next_due`` answers from the run_at of
every delayed job this instance published (enqueue, retry, requeue) plus a
background count of the ladder for what other processes scheduled.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import logging
import threading
import time
from datetime import datetime, timedelta

from oddjob_core.clock import utcnow
from oddjob_core.model import Envelope

from .connection import Connection
from .consuming import Consumers
from .declaring import Topologies

log = logging.getLogger("oddjob.rabbitmq")

#: how long after its run_at a job this process scheduled still counts as waiting
#: (it travels from the last delay queue to the work queue, then to a consumer)
IN_TRANSIT = timedelta(seconds=2)
#: seconds next_due answers from its count of a delay ladder before counting again
LADDER_COUNT_TTL = 0.5


class ScheduleTracker:
    """The delay ladder's state per queue, for ``next_due``."""

    def __init__(
        self, connection: Connection, topologies: Topologies, consumers: Consumers
    ) -> None:
        self.connection = connection
        self.topologies = topologies
        self.consumers = consumers
        self._lock = threading.Lock()
        self._scheduled: dict[str, list[tuple[datetime, str]]] = {}
        self._ladder_counts: dict[str, tuple[float, int]] = {}
        self._epochs: dict[str, int] = {}  # bumped when this instance schedules a job
        self._counting: set[str] = set()  # queues whose ladder is being counted in the background

    def remember(
        self, envelope: Envelope, routed_at: datetime, published_at: datetime | None = None
    ) -> None:
        """Note a job this instance sent into the ladder (``routed_at``: when its delay was set).

        The ladder releases it ``run_at - routed_at`` after the publish, so a slow
        publish (declaring the ladder first) shifts its release by as much. The
        ladder count is forgotten, and a count still running is not cached.
        """
        if envelope.run_at > routed_at:
            release = envelope.run_at + ((published_at or routed_at) - routed_at)
            queue = envelope.queue
            with self._lock:
                heapq.heappush(self._scheduled.setdefault(queue, []), (release, str(envelope.id)))
                self._ladder_counts.pop(queue, None)
                self._epochs[queue] = self._epochs.get(queue, 0) + 1

    def forget(self, queue: str) -> None:
        """The ladder of ``queue`` was emptied."""
        with self._lock:
            self._scheduled.pop(queue, None)
            self._ladder_counts.pop(queue, None)

    def next_due(self, queue: str) -> datetime | None:
        """When the earliest job in the delay ladder is due; exact for jobs this process scheduled.

        The ladder never releases a job before its run_at, so the jobs this
        instance remembers are still waiting (kept until a moment after they are
        due, while the message travels to the work queue). When the ladder holds
        more messages than that (another process scheduled them) the answer is
        one second from now: a safe time to look again. None when nothing waits.
        The ladder count is cached and refreshed in the background; while the
        first count runs, a delivery answers "now".
        """
        now = utcnow()
        with self._lock:
            heap = self._scheduled.get(queue, [])
            while heap and heap[0][0] <= now - IN_TRANSIT:
                heapq.heappop(heap)
            cached = self._ladder_counts.get(queue)
        if cached is None:
            consumer = self.consumers.get(queue)
            future = self.connection.submit(self._count_ladder(queue))
            if consumer is not None and not self.consumers.finished_first(future, consumer):
                return now  # a delivery came first: a job is due now (the count goes on)
            in_ladder = future.result(self.connection.long_timeout)
        else:
            in_ladder = cached[1]
            if time.monotonic() - cached[0] >= LADDER_COUNT_TTL:
                self._refresh(queue)
        soon = now + timedelta(seconds=1)
        with self._lock:
            heap = self._scheduled.get(queue, [])
            if heap:
                return heap[0][0] if in_ladder <= len(heap) else min(heap[0][0], soon)
        return None if in_ladder == 0 else soon

    async def _count_ladder(self, queue: str) -> int:
        """Messages in the delay ladder of ``queue``, counted now.

        Cached unless this instance scheduled a job meanwhile: the count may have
        missed it, and a stale zero would end a burst run early.
        """
        with self._lock:
            epoch = self._epochs.get(queue, 0)
        _, in_ladder, _ = await self.topologies.queue_counts(queue)
        with self._lock:
            if self._epochs.get(queue, 0) == epoch:
                self._ladder_counts[queue] = (time.monotonic(), in_ladder)
        return in_ladder

    def _refresh(self, queue: str) -> None:
        """Count the ladder again in the background: the caller answers from the cache.

        Counting takes ~30 round trips; a coordinator blocked in ``next_due`` would
        not notice a job arriving meanwhile (the idle-pickup latency's long tail).
        """
        with self._lock:
            if queue in self._counting:
                return
            self._counting.add(queue)

        def done(future: concurrent.futures.Future[int]) -> None:
            with self._lock:
                self._counting.discard(queue)
            if not future.cancelled() and future.exception() is not None:
                log.debug("counting the delay ladder of '%s': %s", queue, future.exception())

        self.connection.submit(self._count_ladder(queue)).add_done_callback(done)
