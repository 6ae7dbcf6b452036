"""``Oddjob``: the application object producers and workers share (enqueue, manage, run).

Enqueue options live on ``app.options(...)``, never in the job's own keyword
arguments, so a function with a parameter called ``queue`` or ``delay`` is
enqueued like any other.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import msgspec

from . import waiting
from .clock import as_utc, seconds, utcnow
from .config import Settings, backend_options, load_settings
from .enqueuing import Call, Enqueuer
from .errors import ConfigError, EnqueueError, JobNotFound, TargetMissing, UntrustedTargetWarning
from .group_commit import GroupCommit
from .model import JobQuery, JobRecord, JobState, Page, RetryPolicy
from .plugins import PluginRegistry
from .poison import check_queue_name
from .scheduling.control import Schedules
from .short_ids import PAGE, find_job_id
from .storage import Storage, require_management, require_queue_management
from .targets import Target, TargetResolver, is_unregistered_private, registered_names
from .unique import check_unique_key

if TYPE_CHECKING:
    from .engine.executor import Executor

log = logging.getLogger("oddjob.worker")


#: every Oddjob of this process: a forked child drops their storage before any use
_live_apps: weakref.WeakSet[Oddjob] = weakref.WeakSet()
#: in a forked child, the parent's storages, kept from the garbage collector
_parents_storages: list[Storage] = []


def _after_fork() -> None:
    """In a forked child (the processes executor, a user's fork): storages of its own.

    The parent's connections, sockets and threads are not this process's: using
    them would interleave two processes' traffic on one connection (PostgreSQL:
    "prepared statement already exists"), and closing or finalizing them could
    end the parent's. So they are kept here unused, and the first use opens new
    ones. A storage passed as ``storage_instance`` is the caller's, and is kept.
    """
    for app in list(_live_apps):
        app._writer = None  # its lock may have been held by a parent's thread at the fork
        if app._storage is not None and not app._given_storage:
            _parents_storages.append(app._storage)
            app._storage = None


os.register_at_fork(after_in_child=_after_fork)


def _user_stacklevel() -> int:
    """``stacklevel`` for a warning raised inside oddjob_core that names the user's own line."""
    frame: FrameType | None = sys._getframe(1)  # the caller of warnings.warn: stacklevel 1
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("oddjob_core."):
        frame = frame.f_back
        level += 1
    return level


class Oddjob:
    """Configuration, plugins, storage and enqueueing for one application.

    ``Oddjob()`` reads oddjob.toml / [tool.oddjob] and ODDJOB_* variables;
    keyword arguments override them (``Oddjob(storage="memory")``).
    """

    def __init__(
        self,
        config: str | Path | None = None,
        *,
        registry: PluginRegistry | None = None,
        storage_instance: Storage | None = None,
        **overrides: Any,
    ) -> None:
        self.settings: Settings = load_settings(config, overrides)
        self.registry = registry or PluginRegistry()
        self.registry.check_tables(self.settings.backends)
        self._storage = storage_instance
        self._writer: GroupCommit | None = None
        self._given_storage = storage_instance is not None
        _live_apps.add(self)  # a forked child drops the parent's storage (_after_fork)
        self.targets = TargetResolver(self.settings.allowed_prefixes)
        self._default = Enqueuer(self)
        self.schedules = Schedules(self)
        self._vetted: set[str] = set()  # target names checked against the trust settings
        for module in self.settings.imports:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigError(
                    f"module '{module}' listed in `imports` cannot be imported: {exc}"
                ) from exc

    # -- wiring ----------------------------------------------------------------

    @property
    def storage(self) -> Storage:
        """The configured storage backend, created on first use (and again in a forked child)."""
        if self._storage is None:
            backend = self.registry.storage_backend(self.settings.storage)
            options = backend_options(self.settings, backend.name, backend.options)
            self._storage = backend.factory(options)
        return self._storage

    @property
    def writer(self) -> GroupCommit:
        """Where enqueues write: concurrent callers share storage writes (group commit)."""
        writer = self._writer
        if writer is None:
            writer = self._writer = GroupCommit(lambda jobs: self.storage.add(jobs))
        return writer

    def target_for(self, target: Callable[..., Any] | str) -> Target:
        """Resolve what a producer passed: a function, or a ``"module:function"`` name."""
        if isinstance(target, str):
            module_name, sep, qualname = target.partition(":")
            if not sep:
                raise EnqueueError(f"target '{target}' must look like 'package.module:function'")
            trust = self.settings.imports or self.settings.allowed_prefixes
            if trust and module_name not in sys.modules:
                # importing runs the module's code: never for a module no worker would trust
                reason = self.targets.refusal(target)
                if reason is not None:
                    raise EnqueueError(f"target '{target}' would not be run by a worker: {reason}")
            try:
                function = TargetResolver.import_callable(module_name, qualname)
            except (TargetMissing, ImportError) as exc:
                raise EnqueueError(f"target '{target}' cannot be imported here: {exc}") from exc
            resolved = self.targets.for_callable(function)
        else:
            resolved = self.targets.for_callable(target)
        if resolved.name not in self._vetted:
            self._vet(resolved.name, target if isinstance(target, str) else resolved.name)
        return resolved

    def _vet(self, name: str, given: str) -> None:
        """Refuse (or, with no trust configured, warn about) a target no worker would run.

        With ``imports`` or ``allowed_prefixes`` configured, a target outside them
        fails here. With neither, the job is stored (a producer may not share the
        workers' configuration) but a ``UntrustedTargetWarning`` says that a worker
        with this configuration would refuse it.
        """
        reason = self.targets.refusal(name)
        if reason is not None:
            shown = f"'{name}'" if given == name else f"'{given}' (stored as '{name}')"
            trust = bool(self.settings.imports or self.settings.allowed_prefixes)
            if trust or is_unregistered_private(name):
                raise EnqueueError(f"target {shown} would not be run by a worker: {reason}")
            warnings.warn(
                f"target {shown} is stored, but no worker with this configuration would run "
                f"it: nothing is trusted (neither `imports` nor `allowed_prefixes` is set); {reason}",
                UntrustedTargetWarning,
                stacklevel=_user_stacklevel(),
            )
        self._vetted.add(name)

    def close(self) -> None:
        """Close the storage backend (in a forked child: its own, never the parent's)."""
        if self._storage is not None:
            self._storage.close()
            self._storage = None

    def __enter__(self) -> Oddjob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- enqueueing --------------------------------------------------------------

    def options(
        self,
        *,
        queue: str | None = None,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        priority: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
        key: str | None = None,
    ) -> Enqueuer:
        """Enqueue options for the next call(s): ``app.options(delay=timedelta(days=3)).enqueue(f)``.

        ``key``: a unique job. While a job of the queue holding ``key`` waits or
        runs, ``enqueue`` stores nothing and returns that job's id.
        """
        if run_at is not None and delay is not None:
            raise EnqueueError("give either run_at= or delay=, not both")
        if key is not None:
            try:
                check_unique_key(key)
            except ValueError as exc:
                raise EnqueueError(str(exc)) from exc
        if delay is not None and seconds(delay) < 0:
            raise EnqueueError(f"delay must be >= 0 seconds, got {seconds(delay)}")
        if timeout is not None and seconds(timeout) <= 0:
            raise EnqueueError(f"timeout must be > 0 seconds, got {seconds(timeout)}")
        if queue is not None:
            try:
                check_queue_name(queue)
            except ValueError as exc:
                raise EnqueueError(str(exc)) from exc
        if run_at is not None:
            try:
                run_at = as_utc(run_at)
            except ValueError as exc:
                raise EnqueueError(str(exc)) from exc
        return Enqueuer(
            self,
            queue=queue,
            run_at=run_at,
            delay=seconds(delay) if delay is not None else None,
            priority=priority,
            retry=retry,
            timeout=seconds(timeout) if timeout is not None else None,
            key=key,
        )

    def enqueue(self, target: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> uuid.UUID:
        """Store a job that calls ``target(*args, **kwargs)`` as soon as a worker is free."""
        return self._default.enqueue(target, *args, **kwargs)

    def enqueue_many(self, calls: Iterable[Call]) -> list[uuid.UUID]:
        """Store many jobs in one storage call."""
        return self._default.enqueue_many(calls)

    async def enqueue_async(
        self, target: Callable[..., Any] | str, /, *args: Any, **kwargs: Any
    ) -> uuid.UUID:
        """``enqueue`` for asyncio applications."""
        return await self._default.enqueue_async(target, *args, **kwargs)

    async def enqueue_many_async(self, calls: Iterable[Call]) -> list[uuid.UUID]:
        """``enqueue_many`` for asyncio applications."""
        return await self._default.enqueue_many_async(calls)

    # -- schedules -----------------------------------------------------------------

    def schedule(
        self,
        name: str,
        target: Callable[..., Any] | str,
        /,
        *args: Any,
        cron: str | None = None,
        every: str | float | timedelta | None = None,
        timezone: str = "UTC",
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
        catch_up: str = "latest",
        max_catch_up: int = 100,
    ) -> None:
        """Run ``target(*args, **kwargs)`` on a cron expression or every interval, from every worker.

        ``app.schedule("nightly", report, 42, cron="0 3 * * *", timezone="Europe/Berlin")``.
        Arguments are bound against the signature now; a bad cron string, unknown
        timezone or misfit argument raises ``ConfigError`` naming the schedule.
        ``catch_up`` ("latest", "all" or "none") says what runs after ticks were
        missed while no worker ran; see docs/recurring.md.
        """
        self.schedules.define(
            name,
            target,
            *args,
            cron=cron,
            every=seconds(every) if isinstance(every, timedelta) else every,
            timezone=timezone,
            kwargs=kwargs,
            queue=queue,
            priority=priority,
            retry=retry,
            timeout=seconds(timeout) if timeout is not None else None,
            catch_up=catch_up,
            max_catch_up=max_catch_up,
        )

    # -- management -------------------------------------------------------------

    def job_id(self, value: uuid.UUID | str) -> uuid.UUID:
        """The id ``value`` names: a UUID, or a unique start or end of one (``01a2b3c4d``, ``5397cbb338bb``).

        An ambiguous fragment raises ``JobNotFound`` listing the candidates.
        """
        if isinstance(value, uuid.UUID):
            return value

        def page(after: datetime | None, before: datetime | None, offset: int) -> Page:
            return self.search(
                created_after=after, created_before=before, limit=PAGE, offset=offset
            )

        return find_job_id(value, page)

    def get(self, job_id: uuid.UUID | str) -> JobRecord:
        """The stored job; ``JobNotFound`` if there is none."""
        job_id = self.job_id(job_id)
        record = require_management(self.storage, "look up jobs by id").get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id} in storage '{self.storage.name}'")
        return record

    def wait(self, job_id: uuid.UUID | str, timeout: float | None = None) -> Any:
        """Block until the job finished and return its result as its target's return type.

        Raises ``JobFailed`` (with the job's last error) if it failed or was
        cancelled, ``WaitTimeout`` (a ``TimeoutError``) after ``timeout`` seconds.
        """
        full = self.job_id(job_id)
        return waiting.wait(lambda: self.get(full), full, timeout)

    async def wait_async(self, job_id: uuid.UUID | str, timeout: float | None = None) -> Any:
        """``wait`` for asyncio code."""
        full = await asyncio.to_thread(self.job_id, job_id)
        return await waiting.wait_async(lambda: self.get(full), full, timeout)

    def search(
        self,
        *,
        queue: str | None = None,
        states: Sequence[JobState | str] | None = None,
        target: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        arguments: dict[str, Any] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page:
        """Jobs matching every given filter, newest first.

        ``target`` is a whole ``module:function`` name, or a module prefix without
        ``:`` (``myapp.jobs`` or ``myapp``), matched here over the other filters' pages.
        """
        management = require_management(self.storage, "search jobs")
        query = JobQuery(
            queue=queue,
            states=tuple(JobState(s) for s in states) if states else None,
            target=target if target is None or ":" in target else None,
            created_after=created_after,
            created_before=created_before,
            arguments=msgspec.to_builtins(arguments) if arguments else None,
            limit=limit,
            offset=offset,
        )
        if target is None or ":" in target:
            return management.search(query)
        prefix = target.rstrip(".")
        matched: list[JobRecord] = []
        start = 0
        while True:
            page = management.search(msgspec.structs.replace(query, limit=PAGE, offset=start))
            matched += [
                r
                for r in page.jobs
                if (module := r.envelope.target.partition(":")[0]) == prefix
                or module.startswith(prefix + ".")
            ]
            start += len(page.jobs)
            if not page.jobs or start >= page.total:
                break
        return Page(
            jobs=matched[offset : offset + limit], total=len(matched), offset=offset, limit=limit
        )

    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        """Jobs per queue and state."""
        return require_queue_management(self.storage, "count jobs").counts(queue)

    def cancel(self, job_id: uuid.UUID | str) -> bool:
        """Cancel a waiting job; False if it already runs or finished."""
        return require_management(self.storage, "cancel jobs").cancel(self.job_id(job_id))

    def requeue(self, job_id: uuid.UUID | str, run_at: datetime | None = None) -> bool:
        """Run a finished (typically failed) job again with a fresh retry budget."""
        management = require_queue_management(self.storage, "requeue jobs")
        return management.requeue(self.job_id(job_id), as_utc(run_at) if run_at else None)

    def delete(self, job_id: uuid.UUID | str) -> bool:
        """Remove one waiting or finished job for good; False if it is running or unknown."""
        return require_management(self.storage, "delete jobs").delete(self.job_id(job_id))

    def purge(
        self,
        states: Iterable[JobState | str],
        older_than: timedelta | None = None,
        queue: str | None = None,
    ) -> int:
        """Delete finished jobs in ``states`` last changed more than ``older_than`` ago."""
        cutoff = utcnow() - older_than if older_than is not None else None
        management = require_queue_management(self.storage, "purge jobs")
        return management.purge([JobState(s) for s in states], cutoff, queue)

    # -- working ----------------------------------------------------------------

    def make_executor(self, name: str | None = None) -> Executor:
        """Build a new executor for this app: ``name``, else the configured one (``threads``)."""
        from .engine.runtime import Runtime  # engine imports app-level modules; import late

        backend = self.registry.execution_backend(name or self.settings.executor)
        options = backend_options(self.settings, backend.name, backend.options)
        runtime = Runtime(self.settings, self.storage, self.registry.hooks, self.targets)
        if not (self.settings.imports or self.settings.allowed_prefixes or registered_names()):
            log.warning(
                "this worker trusts no target: `imports` and `allowed_prefixes` are empty and no "
                "@job function is registered, so every job will fail as 'not trusted'; list your "
                'job modules in `imports` (e.g. imports = ["myapp.jobs"] in oddjob.toml)'
            )
        executor = backend.factory(runtime, options)
        for plugin in self.registry.hooks.worker_starting(runtime, executor):
            self.registry.pm.unregister(plugin)  # it asked to stay out of this worker's way
        return executor

    def worker(self) -> Executor:
        """Deprecated name of ``make_executor()`` (it builds an executor, not a worker)."""
        warnings.warn(
            "Oddjob.worker() is deprecated; use Oddjob.make_executor()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.make_executor()

    def run_worker(
        self,
        queues: Sequence[str] | None = None,
        *,
        workers: int | None = None,
        burst: bool = False,
        burst_wait: float = 0.0,
        handle_signals: bool = True,
        schedules: bool = True,
        executor: str | None = None,
    ) -> None:
        """Run queues until stopped (or, with ``burst``, until no job is due).

        With ``schedules`` (the default) this process also enqueues the ticks of
        every schedule; any number of workers may do so at once. ``executor``
        picks an execution backend other than the configured one.
        """
        scheduler = self.schedules.scheduler() if schedules else None
        runner = self.make_executor(executor)
        if workers is not None:
            runner.default_workers = workers
        if scheduler is not None:
            scheduler.start()
        try:
            runner.run(queues, burst=burst, burst_wait=burst_wait, handle_signals=handle_signals)
        finally:
            if scheduler is not None:
                scheduler.stop()
