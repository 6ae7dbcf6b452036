"""Short job ids: a unique start or end of an id, as the CLI and logs show them.

UUIDv7 ids start with their creation time in milliseconds, so a prefix of nine
or more hex digits names a time window and is looked up there; any other
fragment (the tail the worker's log lines show) is matched by scanning.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from .errors import JobNotFound
from .model import Page

#: fewer hex digits than this match too many jobs to be worth looking up
MIN_DIGITS = 6
#: a prefix this long pins the creation time to a window of at most 2**12 ms
WINDOW_DIGITS = 9
#: slack around that window: the id and created_at are taken a moment apart
SLACK = timedelta(seconds=5)
PAGE = 1000
#: candidates listed when a fragment is ambiguous
SHOWN = 10

_HEX = re.compile(r"[0-9a-f]+")

Search = Callable[[datetime | None, datetime | None, int], Page]


def parse_job_id(text: str) -> uuid.UUID | str:
    """The UUID ``text`` spells, else its hex digits as a fragment to look up."""
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    digits = text.strip().lower().replace("-", "")
    if len(digits) < MIN_DIGITS or not _HEX.fullmatch(digits) or len(digits) >= 32:
        raise JobNotFound(
            f"'{text}' is not a job id: give the whole id or at least {MIN_DIGITS} hex digits "
            "of its start or end (as `oddjob jobs list` and the worker's log lines show it)"
        )
    return digits


def _window(digits: str) -> tuple[datetime, datetime] | None:
    if len(digits) < WINDOW_DIGITS:
        return None
    head = digits[:12]
    low = int(head.ljust(12, "0"), 16)
    high = int(head.ljust(12, "f"), 16)
    try:
        start = datetime.fromtimestamp(low / 1000, UTC) - SLACK
        end = datetime.fromtimestamp(high / 1000, UTC) + SLACK
    except (OverflowError, OSError, ValueError):
        return None
    return start, end


def find_job_id(text: str, search: Search) -> uuid.UUID:
    """The one stored id that starts or ends with ``text``; ``JobNotFound`` names the candidates.

    ``search(created_after, created_before, offset)`` returns one page of jobs.
    """
    parsed = parse_job_id(text)
    if isinstance(parsed, uuid.UUID):
        return parsed
    digits = parsed
    found: list[uuid.UUID] = []
    window = _window(digits)
    if window is not None:
        found = _scan(digits, search, *window, starts_only=True)
    if not found:
        found = _scan(digits, search, None, None, starts_only=False)
    if len(found) == 1:
        return found[0]
    if not found:
        raise JobNotFound(f"no job id starts or ends with '{text}'")
    shown = ", ".join(str(i) for i in found[:SHOWN])
    more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    raise JobNotFound(
        f"'{text}' is ambiguous: {len(found)} job ids match ({shown}{more}); give more digits"
    )


def _scan(
    digits: str,
    search: Search,
    after: datetime | None,
    before: datetime | None,
    *,
    starts_only: bool,
) -> list[uuid.UUID]:
    found: list[uuid.UUID] = []
    offset = 0
    while True:
        page = search(after, before, offset)
        for record in page.jobs:
            hexed = record.envelope.id.hex
            if hexed.startswith(digits) or (not starts_only and hexed.endswith(digits)):
                found.append(record.envelope.id)
        offset += len(page.jobs)
        if not page.jobs or offset >= page.total:
            return found
