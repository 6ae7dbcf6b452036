"""Rendering for humans (aligned tables) and machines (``--json``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import click
import msgspec

from ..model import JobRecord

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` → timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(f"'{text}' is not a duration; use e.g. 30s, 15m, 12h, 7d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])


def echo_json(value: Any) -> None:
    """Print any msgspec-encodable value as JSON on one line."""
    click.echo(msgspec.json.encode(msgspec.to_builtins(value)).decode())


def record_json(record: JobRecord) -> dict[str, Any]:
    """A stored job for ``--json``: its ``id`` and ``state`` at the top, then every field."""
    data: dict[str, Any] = msgspec.to_builtins(record)
    return {"id": str(record.id), **data}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print an aligned plain-text table."""
    text = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in text:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def job_row(record: JobRecord) -> list[Any]:
    env = record.envelope
    return [
        env.id,
        env.queue,
        record.state.value,
        env.target,
        env.attempts,
        env.run_at,
        record.updated_at,
    ]


JOB_HEADERS = ["id", "queue", "state", "target", "attempts", "run at (UTC)", "updated (UTC)"]
