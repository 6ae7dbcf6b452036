"""A schedule: a validated target call, when it ticks, and what to do with missed ticks."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from ..config import ScheduleSettings
from ..errors import ConfigError, OddjobError
from ..ids import uuid7
from ..model import Envelope, RetryPolicy
from ..poison import check_queue_name
from .timing import Cron, Every, Timing, parse_every, tick_id, zone

if TYPE_CHECKING:
    from ..app import Oddjob


class CatchUp(enum.StrEnum):
    """What a schedule does with ticks no worker enqueued in time (an outage, a deploy)."""

    LATEST = "latest"  # run the most recent missed tick once
    ALL = "all"  # run every missed tick, up to max_catch_up (the most recent ones)
    NONE = "none"  # skip them


@dataclass(frozen=True)
class Schedule:
    """One schedule, validated: ``template`` is its job with the arguments already bound."""

    name: str
    timing: Timing
    timezone: str
    template: Envelope
    catch_up: CatchUp = CatchUp.LATEST
    max_catch_up: int = 100
    source: str = "code"  # "code" or the config file it came from

    @property
    def target(self) -> str:
        """``module:function`` of the job each tick runs."""
        return self.template.target

    def tick(self, instant: datetime, now: datetime) -> Envelope:
        """The job of the tick at ``instant``: its id is the same in every process."""
        return msgspec.structs.replace(
            self.template,
            id=tick_id(self.name, instant),
            run_at=instant,
            created_at=now,
            schedule=self.name,
        )

    def extra(self, now: datetime) -> Envelope:
        """A job for one extra run now (``trigger``), with a fresh id."""
        return msgspec.structs.replace(
            self.template, id=uuid7(), run_at=now, created_at=now, schedule=self.name
        )


def check_schedule_name(name: str) -> str:
    """Schedule names follow the queue-name rule: they become keys and file names."""
    try:
        return check_queue_name(name)
    except ValueError as exc:
        raise ValueError(str(exc).replace("queue name", "schedule name")) from exc


def build_schedule(
    app: Oddjob,
    name: str,
    target: Callable[..., Any] | str,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    cron: str | None = None,
    every: str | float | None = None,
    timezone: str = "UTC",
    queue: str | None = None,
    priority: int | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    catch_up: str = "latest",
    max_catch_up: int = 100,
    source: str = "code",
) -> Schedule:
    """Validate everything a schedule names; ``ConfigError`` naming the schedule otherwise."""
    where = f"schedule '{name}'" + (f" (from {source})" if source != "code" else "")
    try:
        check_schedule_name(name)
        if (cron is None) == (every is None):
            raise ValueError("give exactly one of cron='...' or every='...'")
        tz = zone(timezone)
        timing: Timing = Cron(cron, tz) if cron is not None else Every(parse_every(every or 0))
        policy = CatchUp(catch_up)
        if max_catch_up < 1:
            raise ValueError(f"max_catch_up must be >= 1, got {max_catch_up}")
        options = app.options(queue=queue, priority=priority, retry=retry, timeout=timeout)
        template = options.envelope(_call(target, args, kwargs or {}))
    except (ValueError, OddjobError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return Schedule(
        name=name,
        timing=timing,
        timezone=timezone,
        template=template,
        catch_up=policy,
        max_catch_up=max_catch_up,
        source=source,
    )


def from_settings(app: Oddjob, name: str, table: ScheduleSettings, source: str) -> Schedule:
    """A ``[schedules.NAME]`` table as a schedule."""
    return build_schedule(
        app,
        name,
        table.target,
        tuple(table.args),
        dict(table.kwargs),
        cron=table.cron,
        every=table.every,
        timezone=table.timezone,
        queue=table.queue,
        priority=table.priority,
        retry=table.retry,
        timeout=table.timeout,
        catch_up=table.catch_up,
        max_catch_up=table.max_catch_up,
        source=source,
    )


def _call(target: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    from ..enqueuing import Call  # enqueuing imports this module; import late

    return Call(target, args, kwargs)
