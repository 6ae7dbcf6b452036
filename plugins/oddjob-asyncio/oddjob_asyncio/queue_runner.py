"""One queue on the event loop: a claim task, N worker tasks, a recorder task.

The same shape and backpressure as the threads executor: the claim task stops
claiming while the claimed jobs waiting for a worker reach ``2 × concurrency``
(and calls the ``oddjob_queue_saturated`` hook), never queues more than
``3 × concurrency - 1``, and pauses while ``4 × concurrency`` outcomes wait for
their write. Storage is synchronous, so every storage call runs on one of the
queue's two I/O threads (one claims, one records) and the loop never blocks on
it. ``async def`` jobs run as tasks on the loop, cancelled at their timeout or
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

from oddjob_core.clock import utcnow
from oddjob_core.engine import BurstClock, JobContext, LeaseKeeper, Runtime
from oddjob_core.engine.context import _current
from oddjob_core.engine.runner import Attempted, Lost, Outcome, Prepared
from oddjob_core.errors import StorageError
from oddjob_core.model import Claim

log = logging.getLogger("oddjob.worker")

WATCH_EVERY = 0.2  # seconds between checks for running async jobs whose lease was lost


class QueueRunner:
    """Claims and runs the jobs of one queue on the executor's event loop."""

    def __init__(
        self,
        name: str,
        concurrency: int,
        runtime: Runtime,
        leases: LeaseKeeper,
        sync_pool: ThreadPoolExecutor,
        count: Callable[[list[Outcome]], None],
        *,
        burst: bool,
        burst_wait: float,
    ) -> None:
        self.name = name
        self.concurrency = concurrency
        self.capacity = 2 * concurrency
        self.ceiling = 3 * concurrency - 1
        self.recording_bound = 4 * concurrency
        self.batch_size = runtime.settings.queue(name).batch_size or self.ceiling
        self._runtime = runtime
        self._leases = leases
        self._sync_pool = sync_pool
        self._count = count
        self._burst = burst
        self._burst_wait = burst_wait
        self._burst_clock = BurstClock(burst_wait)
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
        self._async_jobs: dict[object, tuple[JobContext, asyncio.Future[Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.finished = threading.Event()  # claiming ended: burst done, or stopped

    def in_flight(self) -> int:
        """Jobs claimed and not yet finished (read from any thread; a snapshot)."""
        return self._pending + self._running + self._recording

    # -- lifecycle (on the loop) ---------------------------------------------------

    async def start(self) -> None:
        self._workers = [asyncio.create_task(self._work_loop()) for _ in range(self.concurrency)]
        self._claimer = asyncio.create_task(self._claim_loop())
        self._recorder = asyncio.create_task(self._record_loop())
        self._watcher = asyncio.create_task(self._watch_leases())

    async def stop(self, timeout: float) -> int:
        """Stop claiming, let running jobs finish up to ``timeout`` s; return how many still ran."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
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
        storage, settings = self._runtime.storage, self._runtime.settings
        saturated = False
        failures = 0
        try:
            while not self._stopping.is_set():
                while not self._stopping.is_set() and (
                    self._pending >= self.capacity or self._recording >= self.recording_bound
                ):
                    if not saturated and self._pending >= self.capacity:
                        saturated = True
                        self._runtime.hooks.queue_saturated(
                            self.name, self._pending, self.concurrency
                        )
                    self._room.clear()
                    await self._wait(self._room, 0.5)
                saturated = False
                if self._stopping.is_set():
                    break
                room = self.ceiling - self._pending
                try:
                    claims = await loop.run_in_executor(
                        self._claim_io,
                        storage.claim,
                        self.name,
                        min(room, self.batch_size),
                        settings.lease,
                        self._runtime.owner,
                    )
                    failures = 0
                except Exception as exc:  # StorageError, or a driver error a backend let through
                    failures += 1
                    wait = min(30.0, 0.5 * 2 ** min(failures, 6))
                    log.error(
                        "claiming from queue '%s' failed: %s; retrying in %.1f s",
                        self.name,
                        exc,
                        wait,
                    )
                    await self._wait(self._stopping, wait)
                    continue
                if claims:
                    self._burst_clock.busy()
                    self._leases.hold(claims)
                    self._pending += len(claims)
                    for claim in claims:
                        self._work.put_nowait(claim)
                    continue
                if await self._idle_wait():
                    break
        finally:
            await self._shutdown_workers()

    async def _idle_wait(self) -> bool:
        """Nothing was due: sleep until work may be due. True when a burst run is done."""
        loop = asyncio.get_running_loop()
        storage, settings = self._runtime.storage, self._runtime.settings
        # read before next_due, so a retry recorded since is seen
        idle = self._pending == 0 and self._running == 0 and self._recording == 0
        try:
            next_due = await loop.run_in_executor(self._claim_io, storage.next_due, self.name)
        except Exception as exc:
            log.warning("could not ask queue '%s' for its next due job: %s", self.name, exc)
            next_due = None
        now = utcnow()
        if self._burst and self._burst_clock.done(idle, next_due, now):
            return True
        timeout = settings.poll_interval
        if next_due is not None:
            timeout = min(timeout, max(0.005, (next_due - now).total_seconds()))
        if self._burst:
            timeout = min(timeout, 0.05)  # re-check quickly: the last jobs may just have finished
        try:
            await loop.run_in_executor(self._claim_io, storage.wait_for_work, [self.name], timeout)
        except Exception as exc:
            log.warning("waiting for work on queue '%s' failed: %s", self.name, exc)
            await self._wait(self._stopping, timeout)
        return False

    async def _shutdown_workers(self) -> None:
        unstarted: list[Claim] = []
        while not self._work.empty():
            item = self._work.get_nowait()
            if item is not None:
                unstarted.append(item)
        if unstarted:
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._claim_io, self._runtime.storage.release, unstarted
                )
                log.info("gave back %d unstarted job(s) of queue '%s'", len(unstarted), self.name)
            except StorageError as exc:
                log.error(
                    "could not give back %d job(s): %s; they run again after their lease",
                    len(unstarted),
                    exc,
                )
            for claim in unstarted:
                self._leases.drop(claim)
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
            if self._pending < self.capacity:
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
                if self._recording < self.recording_bound:
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
