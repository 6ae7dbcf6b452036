"""Group commit: concurrent enqueues share one storage write.

A web app enqueues one job per request from many threads (or many tasks of
one event loop) at once. Each ``add`` call is one durable write: an fsync, a
publisher-confirm round trip, a commit. While one write is in flight, later
callers queue here; the next write takes all of them, so N concurrent callers
pay for about one write instead of N. A caller alone goes straight through.

Durability is unchanged: a caller returns only after the write holding its
jobs returned. The caller whose write it is (the leader) never serves others
after its own jobs are stored: it hands the lead to the next waiting caller.
A write of several callers' jobs that fails is retried per caller, so one
caller's refused job (a NUL byte PostgreSQL rejects, say) fails only that
caller; the others' jobs go in alone (ids make that retry idempotent where the
backend can enforce it; elsewhere at-least-once delivery already allows a copy).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

from .model import Envelope

Write = Callable[[Sequence[Envelope]], None]


class _Waiter:
    """One caller's jobs, its outcome, and how to wake it (stored, or chosen to lead next)."""

    __slots__ = ("error", "jobs", "lead", "stored", "taken", "wake")

    def __init__(self, jobs: Sequence[Envelope]) -> None:
        self.jobs = jobs
        self.error: BaseException | None = None
        self.stored = False
        self.lead = False  # chosen to write next
        self.taken = False  # someone runs the lead for it (exactly one)
        self.wake: Callable[[], None] = lambda: None


class GroupCommit:
    """Coalesces concurrent ``add`` calls into shared writes (thread-safe; asyncio too)."""

    def __init__(self, write: Write, *, max_jobs: int = 1000) -> None:
        self._write = write
        self._max_jobs = max_jobs
        self._lock = threading.Lock()
        self._waiting: list[_Waiter] = []
        self._writing = False
        self.writes = 0  # storage writes made (for tests and benchmarks)

    def add(self, jobs: Sequence[Envelope]) -> None:
        """Store ``jobs`` durably; shares the write with callers that arrive meanwhile."""
        waiter = _Waiter(jobs)
        gate = threading.Lock()  # a held lock is the cheapest one-shot signal (an Event builds
        gate.acquire()  # a Condition per call: a tenth of a busy producer's CPU)
        waiter.wake = gate.release  # called at most once per waiter (see _lead)
        if not self._join(waiter):
            self._lead(waiter)
        else:
            gate.acquire()
            if not waiter.stored and self._take_lead(waiter):
                self._lead(waiter)
        if waiter.error is not None:
            raise waiter.error

    async def add_async(self, jobs: Sequence[Envelope]) -> None:
        """``add`` for event loops: waits without holding a thread; writes run off the loop."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        waiter = _Waiter(jobs)

        def wake() -> None:
            if woken.cancelled():  # its task gave up waiting: lead for it if it was chosen
                self._lead_in_background(waiter)
                return
            try:
                loop.call_soon_threadsafe(_resolve, woken)
            except RuntimeError:  # the loop is closed: nobody reads this, but someone must lead
                self._lead_in_background(waiter)

        waiter.wake = wake
        if not self._join(waiter):
            await asyncio.to_thread(self._lead, waiter)
        else:
            try:
                await woken
            except asyncio.CancelledError:
                self._lead_in_background(
                    waiter
                )  # if it was chosen to lead, the others still need it
                raise
            if not waiter.stored and self._take_lead(waiter):
                await asyncio.to_thread(self._lead, waiter)
        if waiter.error is not None:
            raise waiter.error

    def _join(self, waiter: _Waiter) -> bool:
        """Queue ``waiter``; True if a write is in flight (wait to be woken), False to lead now."""
        with self._lock:
            self._waiting.append(waiter)
            if self._writing:
                return True
            self._writing = True
            waiter.lead = waiter.taken = True
            return False

    def _take_lead(self, waiter: _Waiter) -> bool:
        """True for the one caller that runs the lead ``waiter`` was given."""
        with self._lock:
            if not waiter.lead or waiter.taken:
                return False
            waiter.taken = True
            return True

    def _lead_in_background(self, waiter: _Waiter) -> None:
        if self._take_lead(waiter):
            threading.Thread(target=self._lead, args=(waiter,), daemon=True).start()

    def _lead(self, own: _Waiter) -> None:
        """Write batches of waiting callers until ``own`` is stored, then pass the lead on."""
        while not own.stored:
            with self._lock:
                batch: list[_Waiter] = []
                total = 0
                while self._waiting and (
                    not batch or total + len(self._waiting[0].jobs) <= self._max_jobs
                ):
                    waiter = self._waiting.pop(0)
                    batch.append(waiter)
                    total += len(waiter.jobs)
            self._store(batch)
            for waiter in batch:
                if waiter is not own:
                    waiter.wake()
        with self._lock:
            successor = self._waiting[0] if self._waiting else None
            if successor is not None:
                successor.lead = True
            else:
                self._writing = False
        if successor is not None:
            successor.wake()

    def _store(self, batch: list[_Waiter]) -> None:
        """One write for the whole batch; on failure, one write per caller."""
        self.writes += 1
        try:
            self._write([job for waiter in batch for job in waiter.jobs])
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for waiter in batch:
                    self.writes += 1
                    try:
                        self._write(waiter.jobs)
                    except BaseException as own:
                        waiter.error = own
        for waiter in batch:
            waiter.stored = True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
