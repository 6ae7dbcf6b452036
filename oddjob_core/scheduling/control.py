"""``app.schedules``: define, list, trigger, pause and resume schedules (the CLI and dashboard use it)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from ..clock import utcnow
from ..errors import ConfigError
from ..keyvalue import key_value_of, require_key_value
from ..model import JobState, RetryPolicy
from ..storage import Storage, management_of
from .schedule import Schedule, build_schedule, from_settings
from .scheduler import PAUSED, Scheduler, paused_names
from .timing import tick_id

if TYPE_CHECKING:
    from ..app import Oddjob


class ScheduleInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    """One schedule as ``oddjob schedules list`` shows it."""

    name: str
    target: str
    cron: str | None
    every: str | None
    timezone: str
    queue: str
    next_run: datetime
    last_tick: datetime | None
    last_job_id: uuid.UUID | None
    last_job_state: JobState | None  # None: no such job stored (paused, purged or not kept)
    paused: bool
    source: str


class Schedules:
    """The schedules of one app: those defined in code plus those in its configuration.

    A config table wins over a code definition of the same name, so operators
    can change a schedule without a deploy.
    """

    def __init__(self, app: Oddjob) -> None:
        self.app = app
        self._code: dict[str, Schedule] = {}
        self._all: dict[str, Schedule] | None = None

    def define(
        self,
        name: str,
        target: Callable[..., Any] | str,
        /,
        *args: Any,
        cron: str | None = None,
        every: str | float | None = None,
        timezone: str = "UTC",
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        catch_up: str = "latest",
        max_catch_up: int = 100,
    ) -> Schedule:
        """Validate and add a schedule (see ``Oddjob.schedule``)."""
        if name in self._code:
            raise ConfigError(f"schedule '{name}' is defined twice in code")
        schedule = build_schedule(
            self.app,
            name,
            target,
            args,
            kwargs,
            cron=cron,
            every=every,
            timezone=timezone,
            queue=queue,
            priority=priority,
            retry=retry,
            timeout=timeout,
            catch_up=catch_up,
            max_catch_up=max_catch_up,
        )
        self._code[name] = schedule
        self._all = None
        return schedule

    def definitions(self) -> dict[str, Schedule]:
        """Every schedule by name, validated (a bad one raises ``ConfigError`` naming it)."""
        if self._all is None:
            found = dict(self._code)
            source = "config"
            for name, table in self.app.settings.schedules.items():
                found[name] = from_settings(self.app, name, table, source)
            self._all = found
        return self._all

    def get(self, name: str) -> Schedule:
        """The schedule ``name``; ``ConfigError`` listing the known ones otherwise."""
        found = self.definitions()
        if name not in found:
            known = ", ".join(sorted(found)) or "none defined"
            raise ConfigError(f"no schedule named '{name}' (schedules: {known})")
        return found[name]

    @property
    def _storage(self) -> Storage:
        return self.app.storage

    def list(self, now: datetime | None = None) -> list[ScheduleInfo]:
        """Every schedule with its next run, last tick, that tick's job state and paused flag."""
        now = now or utcnow()
        storage = self._storage
        paused = paused_names(key_value_of(storage))
        management = management_of(storage)
        out = []
        for schedule in sorted(self.definitions().values(), key=lambda s: s.name):
            last = schedule.timing.last_before(now)
            job_id = tick_id(schedule.name, last) if last is not None else None
            state = None
            if job_id is not None and management is not None:
                record = management.get(job_id)
                state = record.state if record is not None else None
            timing = schedule.timing.describe()
            out.append(
                ScheduleInfo(
                    name=schedule.name,
                    target=schedule.target,
                    cron=timing.get("cron"),
                    every=timing.get("every"),
                    timezone=schedule.timezone,
                    queue=schedule.template.queue,
                    next_run=schedule.timing.next_after(now),
                    last_tick=last,
                    last_job_id=job_id,
                    last_job_state=state,
                    paused=schedule.name in paused,
                    source=schedule.source,
                )
            )
        return out

    def trigger(self, name: str) -> uuid.UUID:
        """Enqueue one extra run of ``name`` now (paused or not); return its job id."""
        job = self.get(name).extra(utcnow())
        self._storage.add([job])
        self.app.registry.hooks.job_enqueued([job])
        return job.id

    def pause(self, name: str) -> None:
        """Stop ``name``'s ticks on every worker (stored); ticks while paused are skipped."""
        self.get(name)
        kv = require_key_value(self._storage, "pause schedules")
        kv.kv_write({PAUSED + name: utcnow().isoformat().encode()})

    def resume(self, name: str) -> None:
        """Let ``name`` tick again from its next tick on (paused ticks are not caught up)."""
        self.get(name)
        kv = require_key_value(self._storage, "resume schedules")
        kv.kv_write({PAUSED + name: None})

    def is_paused(self, name: str) -> bool:
        """Whether ``name`` is paused in the store."""
        return name in paused_names(key_value_of(self._storage))

    def scheduler(self, **options: Any) -> Scheduler:
        """A scheduler for every schedule of this app (start it with ``.start()``)."""
        return Scheduler(self._storage, self.definitions().values(), **options)
