"""The 'processes' executor: the threads executor's coordinator, each worker thread driving a child process.

For CPU-bound jobs, which the GIL serialises on threads. Per queue, the same
coordinator claims (same backpressure), the same recorder writes outcomes and
the core's ``LeaseKeeper`` renews leases in this process; each worker thread
owns one child process (forked, so the app's registered targets and hooks are
there) and sends it one claim at a time over a pipe (msgspec, no pickle).

- A job past its ``timeout`` gets ``kill_grace`` seconds to stop by itself
  (it sees ``current_job().cancelled``); then its process is killed and the
  attempt fails (or retries) as ``JobTimeout``. A replacement process starts
  for the next job.
- A process that dies mid-job (a segfault, the OOM killer, ``os._exit``) does
  not lose the job: the parent still holds its lease and records the attempt
  as failed with ``ProcessDied``, so it retries under its retry policy.
- A lost lease cancels the job in its process; if it has not stopped within
  ``kill_grace`` the process is killed. Nothing is written for that attempt.
- ``max_jobs_per_process`` recycles a process after that many jobs (memory
  leaks in user code).

Jobs' return values reach the ``job_succeeded`` hooks as msgspec builtins
(what storage keeps), not as the objects the job returned.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from typing import Any

import msgspec

from oddjob_core.engine import JobContext, Runtime
from oddjob_core.engine.runner import (
    Attempted,
    Failure,
    JobRunner,
    Lost,
    Prepared,
    Retrying,
    Success,
)
from oddjob_core.model import AttemptError, Claim
from oddjob_core.retrying import JobTimeout

from .coordinator import Slot
from .executor import ThreadsExecutor

log = logging.getLogger("oddjob.worker")

_fork = multiprocessing.get_context("fork")
CANCEL_SIGNAL = signal.SIGUSR1  # parent -> child: the job's lease was lost, stop it
POLL = 0.1  # seconds between the parent's checks of a running job's deadline and lease
RETIRE = b""  # parent -> child: exit now (closing the pipe is not enough: see ``_retire``)


class ProcessesOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[processes]`` table."""

    max_jobs_per_process: int = 0  # recycle a process after this many jobs; 0: never
    processes: int = 0  # per queue, unless --workers or [queues.NAME] says; 0: one per CPU
    kill_grace: float = 1.0  # seconds a job past its timeout (or lease) has to stop before a kill

    def __post_init__(self) -> None:
        if self.processes < 0:
            raise ValueError(f"processes must be >= 0, got {self.processes}")
        if self.max_jobs_per_process < 0:
            raise ValueError(f"max_jobs_per_process must be >= 0, got {self.max_jobs_per_process}")
        if self.kill_grace < 0:
            raise ValueError(f"kill_grace must be >= 0, got {self.kill_grace}")


class ProcessDied(Exception):
    """The worker process running the job exited before reporting an outcome."""


class _Done(msgspec.Struct, tag="done"):
    stored: Any = None
    duration: float = 0.0


class _Retry(msgspec.Struct, tag="retry"):
    error: AttemptError
    run_at: datetime


class _Fail(msgspec.Struct, tag="fail"):
    error: AttemptError
    missing: bool = False


class _Lost(msgspec.Struct, tag="lost"):
    reason: str


_Reply = _Done | _Retry | _Fail | _Lost
_encoder = msgspec.msgpack.Encoder()
_claims = msgspec.msgpack.Decoder(Claim)
_replies = msgspec.msgpack.Decoder(_Reply)


def _reply(attempt: Attempted) -> _Reply:
    if isinstance(attempt, Success):
        return _Done(attempt.stored, attempt.duration)
    if isinstance(attempt, Retrying):
        return _Retry(attempt.error, attempt.run_at)
    if isinstance(attempt, Failure):
        return _Fail(attempt.error, attempt.missing)
    return _Lost(attempt.reason)


def _child_main(conn: multiprocessing.connection.Connection, runner: JobRunner) -> None:
    """In the child: run claims from ``conn`` one at a time; SIGUSR1 says the lease was lost."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # the parent drains and then stops us
        signal.signal(sig, signal.SIG_IGN)
    current: list[JobContext | None] = [None]

    def lose_lease(signum: int, frame: FrameType | None) -> None:
        ctx = current[0]
        if ctx is not None:
            ctx.lose_lease()

    signal.signal(CANCEL_SIGNAL, lose_lease)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent closed the pipe: retire
        if data == RETIRE:
            return
        claim = _claims.decode(data)
        ctx = runner.context_for(claim)
        current[0] = ctx
        prepared = runner.prepare(claim)
        attempt = runner.call(prepared, ctx) if isinstance(prepared, Prepared) else prepared
        current[0] = None
        conn.send_bytes(_encoder.encode(_reply(attempt)))


class ProcessSlot:
    """One worker thread's child process: started on first use, replaced when it dies or retires."""

    def __init__(self, executor: ProcessesExecutor) -> None:
        self._executor = executor
        self._runtime = executor.runtime
        self._options = executor.options
        self._proc: Any = None  # multiprocessing's fork Process (untyped in typeshed's context API)
        self._conn: multiprocessing.connection.Connection | None = None
        self._jobs = 0

    def attempt(self, claim: Claim, context: JobContext) -> Attempted:
        proc, conn = self._ensure_process()
        self._runtime.hooks.job_started(claim)
        conn.send_bytes(_encoder.encode(claim))
        grace = self._options.kill_grace
        kill_at: float | None = None
        while True:
            ready = multiprocessing.connection.wait([conn, proc.sentinel], POLL)
            if conn in ready:
                try:
                    data = conn.recv_bytes()
                except (EOFError, OSError):
                    pass  # it died after all: below
                else:
                    self._jobs += 1
                    limit = self._options.max_jobs_per_process
                    if limit and self._jobs >= limit:
                        self._retire()
                    return self._outcome(context, _replies.decode(data))
            if ready:  # the sentinel (or a broken pipe): the process is gone
                proc.join(1)
                code = proc.exitcode
                self._retire()
                log.warning(
                    "worker process %s died running job %s (exit code %s); a new one replaces it",
                    proc.pid,
                    claim.job.id,
                    code,
                )
                context.recording = True
                return self._runtime.runner.failed(
                    context,
                    ProcessDied(f"the worker process running the job exited with code {code}"),
                )
            now = time.monotonic()
            if context.lease_lost and kill_at is None:
                os.kill(proc.pid, CANCEL_SIGNAL)
                kill_at = now + grace
            if kill_at is not None and now >= kill_at:
                self._kill(claim, "its lease was lost")
                context.recording = True
                return Lost(claim, "its lease was lost while it ran; its process was killed")
            if context.deadline is not None and now >= context.deadline + grace:
                self._kill(claim, f"it ran past its timeout of {claim.job.timeout} s")
                context.recording = True
                return self._runtime.runner.failed(
                    context,
                    JobTimeout(
                        f"job ran past its timeout of {claim.job.timeout} s; its process was killed"
                    ),
                )

    def _outcome(self, context: JobContext, reply: _Reply) -> Attempted:
        claim = context.claim
        context.recording = True
        if context.lease_lost or isinstance(reply, _Lost):
            reason = reply.reason if isinstance(reply, _Lost) else "its lease was lost while it ran"
            return Lost(claim, reason)
        if isinstance(reply, _Done):
            return Success(claim, reply.stored, reply.stored, reply.duration)
        if isinstance(reply, _Retry):
            return Retrying(claim, reply.error, reply.run_at)
        return Failure(claim, reply.error, reply.missing)

    def close(self) -> None:
        self._retire()

    # -- the process -----------------------------------------------------------------

    def _ensure_process(self) -> tuple[Any, multiprocessing.connection.Connection]:
        if self._proc is None or self._conn is None or not self._proc.is_alive():
            self._retire()
            parent, child = _fork.Pipe(duplex=True)
            proc = _fork.Process(
                target=_child_main,
                args=(child, self._runtime.runner),
                name="oddjob-process",
                daemon=True,
            )
            proc.start()
            child.close()
            self._proc, self._conn, self._jobs = proc, parent, 0
            self._executor.children.add(proc)
        return self._proc, self._conn

    def _kill(self, claim: Claim, why: str) -> None:
        log.warning("killing worker process %s: job %s %s", self._proc.pid, claim.job.id, why)
        self._proc.kill()
        self._retire()

    def _retire(self) -> None:
        """Tell the process to exit and reap it; kill it if it does not go.

        Closing our end of the pipe alone does not end it: a sibling forked later
        inherited a copy of that end, so the child saw no EOF and every shutdown
        waited out the join below (2 s per process, most of a short burst run).
        """
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            try:
                conn.send_bytes(RETIRE)
            except OSError:
                pass  # it is gone already
            conn.close()
        if proc is not None:
            proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
            self._executor.children.discard(proc)


class ProcessesExecutor(ThreadsExecutor):
    """Each queue: the threads executor's coordinator; each worker thread drives one process."""

    def __init__(self, runtime: Runtime, options: ProcessesOptions | None = None) -> None:
        super().__init__(runtime)
        self.options = options or ProcessesOptions()
        self.children: set[Any] = set()  # live worker processes, killed at the latest by stop()

    def workers_for(self, name: str, workers: int | None = None) -> int:
        """Processes for queue ``name``: the argument, ``--workers``, its table, or one per CPU.

        CPU-bound jobs gain nothing from more processes than cores (the default
        8 threads oversubscribed a 2-core machine fourfold).
        """
        if workers or self.default_workers or name in self.runtime.settings.queues:
            return super().workers_for(name, workers)
        return self.options.processes or os.cpu_count() or 1

    def slots(self, queue: str) -> Callable[[], Slot]:
        return lambda: ProcessSlot(self)

    def stopped(self) -> None:
        super().stopped()
        self._kill_children()

    def _kill_children(self) -> None:
        for proc in list(self.children):  # still running past the shutdown timeout
            log.warning("killing worker process %s at shutdown", proc.pid)
            proc.kill()
            proc.join(2)
            self.children.discard(proc)
