"""When a schedule ticks: fixed intervals (``every``) and cron expressions in a time zone.

Every tick instant is an aware UTC datetime. ``every`` ticks are aligned on the
Unix epoch (``every = "15m"`` ticks at :00, :15, :30, :45 UTC), so every worker
computes the same instants without talking to the others. Cron expressions are
evaluated by cronsim in the schedule's time zone, which settles daylight saving:
a wall-clock time that does not exist (02:30 on a spring-forward night) ticks at
the next valid instant (03:00), and a fixed wall-clock time that occurs twice
(02:30 on a fall-back night) ticks once, at its first occurrence. Expressions
whose hour field is a wildcard (``0 * * * *``) follow elapsed time: they tick
at every real hour, both 02:00s included, as Debian cron does.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    """Whole microseconds since the Unix epoch (exact: no float on the way)."""
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_every(value: str | float) -> float:
    """``"15m"``, ``"1h30m"``, ``"10s"`` or a number of seconds → seconds (at least 1)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        total = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ValueError(
                f"every = {value!r} is not a duration: use e.g. '30s', '15m', '1h30m', '1d' "
                "or a number of seconds"
            )
        total = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"every = {value!r} is not a duration")
    if total < 1:
        raise ValueError(f"every = {value!r} is shorter than the 1 second minimum")
    return total


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ``ValueError`` naming it when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown timezone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from exc


class Timing:
    """The tick instants of a schedule; all arguments and results are aware UTC datetimes."""

    def describe(self) -> dict[str, str]:
        """``{"every": "60s"}`` or ``{"cron": "0 3 * * *"}`` for listings."""
        raise NotImplementedError

    def after(self, moment: datetime) -> Iterator[datetime]:
        """Tick instants strictly after ``moment``, ascending, forever."""
        raise NotImplementedError

    def before(self, moment: datetime) -> Iterator[datetime]:
        """Tick instants strictly before ``moment``, descending."""
        raise NotImplementedError

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        return next(self.after(moment))

    def last_before(self, moment: datetime) -> datetime | None:
        """The last tick strictly before ``moment`` (None if there is none)."""
        return next(self.before(moment), None)


@dataclass(frozen=True)
class Every(Timing):
    """A tick every ``seconds``, aligned on the Unix epoch (UTC)."""

    seconds: float

    @property
    def _step_us(self) -> int:
        return round(self.seconds * 1_000_000)

    def describe(self) -> dict[str, str]:
        return {"every": f"{self.seconds:g}s"}

    def after(self, moment: datetime) -> Iterator[datetime]:
        step = self._step_us
        k = epoch_us(moment) // step + 1
        while True:
            yield _EPOCH + timedelta(microseconds=k * step)
            k += 1

    def before(self, moment: datetime) -> Iterator[datetime]:
        step = self._step_us
        k = -(-epoch_us(moment) // step) - 1  # the last multiple strictly below
        while k >= 0:
            yield _EPOCH + timedelta(microseconds=k * step)
            k -= 1


@dataclass(frozen=True)
class Cron(Timing):
    """A five-field cron expression evaluated in ``timezone``."""

    expression: str
    timezone: ZoneInfo

    def __post_init__(self) -> None:
        try:
            CronSim(self.expression, datetime.now(self.timezone))
        except CronSimError as exc:
            raise ValueError(f"bad cron expression {self.expression!r}: {exc}") from exc

    def describe(self) -> dict[str, str]:
        return {"cron": self.expression}

    def after(self, moment: datetime) -> Iterator[datetime]:
        # cronsim works in whole minutes and yields wall times strictly after its start
        for tick in CronSim(self.expression, moment.astimezone(self.timezone)):
            yield tick.astimezone(UTC)

    def before(self, moment: datetime) -> Iterator[datetime]:
        for tick in CronSim(self.expression, moment.astimezone(self.timezone), reverse=True):
            yield tick.astimezone(UTC)


def tick_id(schedule: str, instant: datetime) -> uuid.UUID:
    """The job id of ``schedule``'s tick at ``instant``: the same in every process.

    A UUIDv7 layout whose timestamp is the tick instant (so tick ids sort by
    time like other job ids) and whose other bits hash (schedule, instant).
    """
    us = epoch_us(instant)
    digest = int.from_bytes(hashlib.sha256(f"{schedule}\0{us}".encode()).digest()[:10])
    rand_a = digest >> 68 & 0xFFF
    rand_b = digest & ((1 << 62) - 1)
    ms = us // 1000
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)
