"""One queue on the event loop: a claim task, N worker tasks, a recorder task.

The same shape and backpressure as the threads executor (the rules are the
engine's ``ClaimLoop``, shared by both). Storage is synchronous, so every
storage call runs on one of the queue's two I/O threads (one claims, one
records) and the loop never blocks on it. ``async def`` jobs run as tasks on the loop, cancelled at their timeout or
when their lease is lost; sync jobs run in the executor's bounded thread pool.
Every outcome goes through ``JobRunner.record`` on the recording thread, the
successes of a batch in one ``complete_many``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from oddjob_core.engine import JobContext
from oddjob_core.engine.claiming import ClaimLoop
from oddjob_core.engine.context import _current
from oddjob_core.engine.runner import Attempted, Lost, Outcome, Prepared
from oddjob_core.model import Claim

log = logging.getLogger("oddjob.worker")

WATCH_EVERY = 0.2  # seconds between checks for running async jobs whose lease was lost


class QueueRunner:
    """Claims and runs the jobs of one queue on the executor's event loop."""

    def __init__(
        self,
        claims: ClaimLoop,
        sync_pool: ThreadPoolExecutor,
        count: Callable[[list[Outcome]], None],
    ) -> None:
        name = self.name = claims.name
        self.workers = claims.backpressure.workers
        self._claims = claims
        self._runtime = claims.runtime
        self._leases = claims.leases
        self._sync_pool = sync_pool
        self._count = count
        self._claim_io = ThreadPoolExecutor(1, thread_name_prefix=f"oddjob-{name}-claim")
        self._record_io = ThreadPoolExecutor(1, thread_name_prefix=f"oddjob-{name}-record")
        self._work: asyncio.Queue[Claim | None] = asyncio.Queue()
        self._pending = 0  # claimed, waiting for a worker task
        self._running = 0  # taken by a worker task, not finished
        self._recording = 0  # finished, outcome not written yet
        self._outcomes: list[Attempted] = []
        self._have_outcomes = asyncio.Event()
        self._closing = False
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stop_flag = threading.Event()  # the same, for the claiming thread
        self._async_jobs: dict[object, tuple[JobContext, asyncio.Future[Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.finished = threading.Event()  # claiming ended: burst done, or stopped

    @property
    def gave_up(self) -> Exception | None:
        """Burst only: claiming gave up (the store kept failing)."""
        return self._claims.gave_up

    def in_flight(self) -> int:
        """Jobs claimed and not yet finished (read from any thread; a snapshot)."""
        return self._pending + self._running + self._recording

    # -- lifecycle (on the loop) ---------------------------------------------------

    async def start(self) -> None:
        self._workers = [asyncio.create_task(self._work_loop()) for _ in range(self.workers)]
        self._claimer = asyncio.create_task(self._claim_loop())
        self._recorder = asyncio.create_task(self._record_loop())
        self._watcher = asyncio.create_task(self._watch_leases())

    async def stop(self, timeout: float) -> int:
        """Stop claiming, let running jobs finish up to ``timeout`` s; return how many still ran."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._stop_flag.set()
        self._room.set()
        await self._claimer
        _, unfinished = await asyncio.wait(self._workers, timeout=max(0.0, timeout))
        still = self._running if unfinished else 0
        for task in unfinished:  # their leases expire and they run again
            task.cancel()
        self._closing = True
        self._have_outcomes.set()
        try:
            await asyncio.wait_for(self._recorder, max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            log.error("recording the last outcomes of queue '%s' timed out", self.name)
        self._watcher.cancel()
        self._claim_io.shutdown(wait=False)
        self._record_io.shutdown(wait=False)
        return still

    # -- claiming --------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        loop = asyncio.get_running_loop()
        claims_of = self._claims
        try:
            while not self._stopping.is_set():
                while not self._stopping.is_set() and claims_of.paused(
                    self._pending, self._recording
                ):
                    self._room.clear()
                    await self._wait(self._room, 0.5)
                claims_of.resumed()
                if self._stopping.is_set():
                    break
                try:
                    claims = await loop.run_in_executor(
                        self._claim_io, claims_of.claim, self._pending
                    )
                except Exception as exc:  # StorageError, or a driver error a backend let through
                    wait = claims_of.failed(exc)
                    if wait is None:
                        break
                    await self._wait(self._stopping, wait)
                    continue
                if claims:
                    self._pending += len(claims)
                    for claim in claims:
                        self._work.put_nowait(claim)
                    continue
                idle = self._pending == 0 and self._running == 0 and self._recording == 0
                if await loop.run_in_executor(
                    self._claim_io, claims_of.idle_wait, idle, self._stop_flag
                ):
                    break
        finally:
            await self._shutdown_workers()

    async def _shutdown_workers(self) -> None:
        unstarted: list[Claim] = []
        while not self._work.empty():
            item = self._work.get_nowait()
            if item is not None:
                unstarted.append(item)
        if unstarted:
            await asyncio.get_running_loop().run_in_executor(
                self._claim_io, self._claims.give_back, unstarted
            )
            self._pending -= len(unstarted)
        for _ in self._workers:
            self._work.put_nowait(None)
        self.finished.set()

    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    # -- running ---------------------------------------------------------------------

    async def _work_loop(self) -> None:
        while True:
            claim = await self._work.get()
            if claim is None:
                return
            self._pending -= 1
            self._running += 1
            if self._pending < self._claims.backpressure.capacity:
                self._room.set()
            try:
                attempt = await self._attempt(claim)
            finally:
                self._running -= 1
            self._recording += 1
            self._outcomes.append(attempt)
            self._have_outcomes.set()

    async def _attempt(self, claim: Claim) -> Attempted:
        if self._leases.is_lost(claim):
            return Lost(claim, "its lease was lost before it started")
        runner = self._runtime.runner
        ctx = runner.context_for(claim)
        self._leases.running(claim, ctx)
        try:
            self._runtime.hooks.job_started(claim)
            prepared = runner.prepare(claim)
            if not isinstance(prepared, Prepared):
                return prepared
            if prepared.target.is_async:
                return await self._run_async(ctx, prepared)
            return await asyncio.get_running_loop().run_in_executor(
                self._sync_pool, runner.call, prepared, ctx
            )
        except Exception:  # a bug in a hook or the runner must not kill the worker task
            log.exception("worker crashed running job %s", claim.job.id)
            return Lost(claim, "the worker crashed running it")

    async def _run_async(self, ctx: JobContext, prepared: Prepared) -> Attempted:
        """Await an ``async def`` job as its own task: cancelled at its deadline or on a lost lease."""
        runner = self._runtime.runner
        job_id = ctx.claim.job.id
        token = _current.set(ctx)  # this worker task's context; the job's task copies it
        started = time.perf_counter()
        task: asyncio.Future[Any] | None = None
        try:
            call = runner.bind(prepared, ctx, run_async=False)
            awaitable = self._runtime.hooks.run_job(ctx, call)
            if inspect.isawaitable(awaitable):
                task = asyncio.ensure_future(asyncio.wait_for(awaitable, ctx.remaining()))
                self._async_jobs[job_id] = (ctx, task)
                result = await task
            else:
                result = awaitable
        except asyncio.CancelledError as exc:
            if task is None or not task.cancelled():
                raise  # this worker task itself is being cancelled (shutdown past its timeout)
            return runner.failed(ctx, exc)  # Lost: the watcher cancels only on a lost lease
        except Exception as exc:
            return runner.failed(ctx, exc)
        finally:
            _current.reset(token)
            ctx.recording = True
            self._async_jobs.pop(job_id, None)
        return runner.finish(ctx, result, time.perf_counter() - started)

    async def _watch_leases(self) -> None:
        """Cancel the task of a running async job whose lease the keeper found lost."""
        while True:
            await asyncio.sleep(WATCH_EVERY)
            for ctx, task in list(self._async_jobs.values()):
                if ctx.lease_lost and not task.done():
                    task.cancel()

    # -- recording -------------------------------------------------------------------

    async def _record_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._have_outcomes.wait()
            self._have_outcomes.clear()
            batch, self._outcomes = self._outcomes, []
            if batch:
                await loop.run_in_executor(self._record_io, self._record, batch)
                self._recording -= len(batch)
                if self._recording < self._claims.backpressure.recording_bound:
                    self._room.set()
            if self._closing and not self._outcomes:
                return

    def _record(self, batch: list[Attempted]) -> None:
        """On the recording thread: write the outcomes, then stop renewing and count them."""
        try:
            outcomes = self._runtime.runner.record(batch)
        except BaseException:  # a bug in a hook must not stop recording
            log.exception("recording %d finished job(s) crashed", len(batch))
            outcomes = [Outcome.LOST] * len(batch)
        for attempt in batch:
            self._leases.drop(attempt.claim)
        self._count(outcomes)


def counter(stats: Counter[Outcome], lock: threading.Lock) -> Callable[[list[Outcome]], None]:
    """A function adding outcomes to an executor's ``stats`` under its lock."""

    def count(outcomes: list[Outcome]) -> None:
        with lock:
            stats.update(outcomes)

    return count
