"""One queue: a coordinator thread claims batches, worker threads run them from a shared queue.

Backpressure, backoff, the idle wait and giving back unstarted claims are the
engine's ``ClaimLoop`` rules (shared with the asyncio executor): the
coordinator stops claiming while the pending jobs (claimed, waiting in the
queue for a worker) reach ``2 × workers``; below that it claims at once, never
queueing more than ``3 × workers - 1``, so at most ``4 × workers - 1`` jobs
are claimed and unfinished, running ones included.
Workers share one queue (no round-robin per worker), so an idle worker never
waits behind a long job.

A worker does not wait for a success to be written: it hands the finished job
to the queue's recorder thread and takes the next one. The recorder writes
every success that arrived meanwhile with one storage call, then runs the
``job_succeeded`` hooks. A handed-over job no longer counts as running
(it is done; only its write is outstanding), so claiming the next batch
overlaps with writing the last one; the recorder's backlog has its own bound
of ``4 × workers`` (with ``2 × workers``, claiming paused behind every slow
write; see bench/RESULTS.md).
Leases stay renewed until the outcome is recorded. Retries and failures are
recorded by the worker itself, through the same ``JobRunner.record`` path.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from oddjob_core.engine import JobContext
from oddjob_core.engine.claiming import ClaimLoop
from oddjob_core.engine.runner import Attempted, Lost, Outcome, Success
from oddjob_core.model import Claim

log = logging.getLogger("oddjob.worker")


class Slot(Protocol):
    """Where one worker thread runs its jobs when not on itself (e.g. a child process)."""

    def attempt(self, claim: Claim, context: JobContext) -> Attempted:
        """Run one attempt (like ``JobRunner.attempt``): nothing is written."""

    def close(self) -> None:
        """The worker thread is done: release what the slot holds."""


class QueueCoordinator:
    """Claims and dispatches the jobs of one queue."""

    def __init__(
        self,
        claims: ClaimLoop,
        stats: Counter[Outcome],
        stats_lock: threading.Lock,
        *,
        slots: Callable[[], Slot] | None = None,
    ) -> None:
        self.name = claims.name
        self.workers = claims.backpressure.workers
        self._make_slot = slots
        self._claims = claims
        self.capacity = claims.backpressure.capacity
        self.recording_bound = claims.backpressure.recording_bound
        self._runtime = claims.runtime
        self._leases = claims.leases
        self._stats = stats
        self._stats_lock = stats_lock
        self._work: queue.SimpleQueue[Claim | None] = queue.SimpleQueue()
        self._successes: queue.SimpleQueue[Success | None] = queue.SimpleQueue()
        self._pending = 0  # claimed, waiting in the queue for a worker
        self._running = 0  # taken by a worker, not finished running
        self._recording = 0  # finished successfully, outcome not written yet
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self.finished = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(
                target=self._work_loop, name=f"oddjob-{self.name}-w{i}", daemon=True
            )
            t.start()
            self._threads.append(t)
        r = threading.Thread(
            target=self._record_loop, name=f"oddjob-{self.name}-recorder", daemon=True
        )
        r.start()
        self._recorder = r
        c = threading.Thread(target=self._claim_loop, name=f"oddjob-{self.name}-coord", daemon=True)
        c.start()
        self._coordinator = c

    @property
    def gave_up(self) -> Exception | None:
        """Burst only: claiming gave up (the store kept failing)."""
        return self._claims.gave_up

    def in_flight(self) -> int:
        """Jobs claimed and not yet finished: waiting for a worker, running, or being recorded."""
        with self._cond:
            return self._pending + self._running + self._recording

    def request_stop(self) -> None:
        """Stop claiming; workers finish what they run; unstarted claims are given back."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float | None) -> int:
        """Wait for the threads; return how many jobs were still running at the deadline."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in [self._coordinator, *self._threads]:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._successes.put(None)  # after the workers: record what they finished, then stop
        self._recorder.join(None if deadline is None else max(1.0, deadline - time.monotonic()))
        with self._cond:
            return self._running if any(t.is_alive() for t in self._threads) else 0

    # -- coordinator ---------------------------------------------------------------

    def _claim_loop(self) -> None:
        claims_of = self._claims
        try:
            while not self._stopping.is_set():
                with self._cond:
                    while not self._stopping.is_set() and claims_of.paused(
                        self._pending, self._recording
                    ):
                        self._cond.wait(0.5)
                    pending = self._pending
                claims_of.resumed()
                if self._stopping.is_set():
                    break
                try:
                    claims = claims_of.claim(pending)
                except Exception as exc:  # StorageError, or a driver error a backend let through
                    wait = claims_of.failed(exc)
                    if wait is None:
                        break
                    self._stopping.wait(wait)
                    continue
                if claims:
                    with self._cond:
                        self._pending += len(claims)
                    for claim in claims:
                        self._work.put(claim)
                    continue
                with self._cond:
                    idle = self._pending == 0 and self._running == 0 and self._recording == 0
                if claims_of.idle_wait(idle, self._stopping):
                    break
        finally:
            self._shutdown_workers()

    def _shutdown_workers(self) -> None:
        unstarted: list[Claim] = []
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                unstarted.append(item)
        self._claims.give_back(unstarted)
        with self._cond:
            self._pending -= len(unstarted)
        for _ in self._threads:
            self._work.put(None)
        self.finished.set()

    # -- workers -----------------------------------------------------------------

    def _work_loop(self) -> None:
        slot = self._make_slot() if self._make_slot is not None else None
        try:
            self._run_jobs(slot)
        finally:
            if slot is not None:
                slot.close()

    def _run_jobs(self, slot: Slot | None) -> None:
        runner = self._runtime.runner
        leases = self._leases
        while True:
            claim = self._work.get()
            if claim is None:
                return
            with self._cond:
                self._pending -= 1
                self._running += 1
                if self._pending == self.capacity - 1:  # the coordinator may claim again
                    self._cond.notify()
            attempt: Attempted
            if leases.is_lost(claim):
                attempt = Lost(claim, "its lease was lost before it started")
            else:
                context = runner.context_for(claim)
                leases.running(claim, context)
                try:
                    if slot is None:
                        attempt = runner.attempt(claim, context)
                    else:
                        attempt = slot.attempt(claim, context)
                except BaseException:  # a bug in a hook or the runner must not kill the worker
                    log.exception("worker crashed running job %s", claim.job.id)
                    attempt = Lost(claim, "the worker crashed running it")
                if type(attempt) is Success:
                    with self._cond:  # a success blocks claiming, never unblocks it
                        self._running -= 1
                        self._recording += 1
                    self._successes.put(attempt)  # the recorder finishes it
                    continue
            try:
                outcomes = runner.record([attempt])
            except BaseException:  # a bug in a hook must not kill the worker
                log.exception("recording the outcome of job %s crashed", claim.job.id)
                outcomes = [Outcome.LOST]
            self._finished([claim], outcomes)

    def _record_loop(self) -> None:
        """Write the successes that piled up since the last write in one storage call."""
        runner = self._runtime.runner
        stopping = False
        while not stopping:
            first = self._successes.get()
            if first is None:
                return
            batch = [first]  # backpressure bounds it; backends chunk their statements
            while True:
                try:
                    item = self._successes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                outcomes = runner.record(batch)
            except BaseException:  # a bug in a hook must not stop recording
                log.exception("recording %d finished job(s) crashed", len(batch))
                outcomes = [Outcome.LOST] * len(batch)
            self._finished([s.claim for s in batch], outcomes, recorded=True)

    def _finished(
        self, claims: list[Claim], outcomes: list[Outcome], *, recorded: bool = False
    ) -> None:
        """Outcomes are recorded (or lost): stop renewing, count them, make room for claims."""
        for claim in claims:
            self._leases.drop(claim)
        with self._stats_lock:
            self._stats.update(outcomes)
        with self._cond:
            if recorded:
                self._recording -= len(claims)
                if self._recording + len(claims) >= self.recording_bound > self._recording:
                    self._cond.notify()  # the coordinator may claim again
            else:
                self._running -= len(claims)
