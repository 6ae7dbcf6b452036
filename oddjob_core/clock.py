"""UTC time in one place: every stored time is timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Convert an aware datetime to UTC; refuse naive ones, whose zone is a guess."""
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        raise ValueError(
            f"naive datetime {moment.isoformat()} has no time zone; "
            "pass an aware datetime such as datetime.now(UTC) + timedelta(days=3)"
        )
    return moment.astimezone(UTC)


def seconds(delta: timedelta | float | int) -> float:
    """Accept a timedelta or a number of seconds; return seconds as float."""
    if isinstance(delta, timedelta):
        return delta.total_seconds()
    return float(delta)
