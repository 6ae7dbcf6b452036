"""Turning rows into envelopes, claims and records, and jobs into statement parameters.

The stored ``envelope`` (nvarchar(max) JSON) is the job as enqueued. The
columns ``attempts``, ``run_at`` and ``errors`` change as the job runs and
override those envelope fields, so no write ever rewrites the document.

Times: datetime2 holds UTC without an offset. Values going in are converted
to UTC and stripped of tzinfo here (pyodbc would otherwise send an aware
datetime's local wall time); values coming out get UTC attached.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from oddjob_core.errors import EnqueueError
from oddjob_core.model import AttemptError, Envelope, JobRecord, JobState

_envelope = msgspec.json.Decoder(Envelope)
_errors = msgspec.json.Decoder(tuple[AttemptError, ...])
_any = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


#: column widths of the jobs table (migration 1)
MAX_QUEUE = 100
MAX_TARGET = 400
MAX_OWNER = 200


def to_db(moment: datetime) -> datetime:
    """An aware datetime as the naive UTC value a datetime2 column holds; naive ones are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"naive datetime {moment.isoformat()} has no time zone; pass an aware datetime "
            "(e.g. datetime.now(UTC)), oddjob stores UTC"
        )
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db(value: datetime | None) -> datetime | None:
    """A datetime2 value (UTC by construction) as an aware UTC datetime."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(value: datetime) -> datetime:
    out = from_db(value)
    assert out is not None
    return out


def as_uuid(value: Any) -> uuid.UUID:
    """A uniqueidentifier as returned by pyodbc (a string unless ``pyodbc.native_uuid``)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def encode(value: Any) -> str:
    """JSON text for an nvarchar(max) JSON parameter."""
    return _encoder.encode(value).decode()


def _iso(moment: datetime) -> str:
    """Naive UTC ISO 8601 with a 'T' (read the same way by datetime2 in every session language)."""
    return to_db(moment).isoformat(timespec="microseconds")


def insert_document(jobs: Sequence[Envelope]) -> str:
    """The batch as one JSON array, the single parameter of the insert statement.

    Checks the column widths first, so an over-long queue or target is an
    ``EnqueueError`` naming it instead of a silently truncated value.
    """
    items = []
    for env in jobs:
        if len(env.queue) > MAX_QUEUE:
            raise EnqueueError(
                f"queue name {env.queue[:40]!r}... is {len(env.queue)} characters; "
                f"SQL Server storage holds at most {MAX_QUEUE}: use a shorter queue name"
            )
        if len(env.target) > MAX_TARGET:
            raise EnqueueError(
                f"target {env.target[:60]!r}... is {len(env.target)} characters; SQL Server "
                f"storage holds at most {MAX_TARGET}: register the job under a shorter name"
            )
        items.append({"r": _iso(env.run_at), "c": _iso(env.created_at), "e": env})
    return _encoder.encode(items).decode()


def claims_document(pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> str:
    """``[{"id", "token"}]``: the single parameter of release and extend."""
    return encode([{"id": str(i), "token": str(t)} for i, t in pairs])


def decode_errors(raw: str | None) -> tuple[AttemptError, ...]:
    """The ``errors`` column (a JSON array of attempt errors)."""
    if not raw or raw == "[]":
        return ()
    return _errors.decode(raw)


def envelope_from(raw: str, attempts: int, run_at: datetime, errors: str | None) -> Envelope:
    """Decode the stored envelope and apply the authoritative columns; raises on corrupt data."""
    env = _envelope.decode(raw)
    return msgspec.structs.replace(
        env, attempts=attempts, run_at=_utc(run_at), errors=decode_errors(errors)
    )


def record_from(row: Sequence[Any]) -> JobRecord:
    """A management record (``RECORD_COLUMNS``); a corrupt envelope is shown from its columns."""
    (
        _seq,
        job_id,
        queue,
        target,
        priority,
        run_at,
        attempts,
        created_at,
        raw,
        errors,
        state,
        updated_at,
        finished_at,
        result,
        lease_owner,
        lease_expires_at,
    ) = row
    try:
        env = envelope_from(raw, attempts, run_at, errors)
    except Exception:  # corrupt (RecursionError too): shown from its columns
        env = Envelope(
            id=as_uuid(job_id),
            queue=queue,
            target=target,
            arguments={},
            run_at=_utc(run_at),
            created_at=_utc(created_at),
            priority=priority,
            attempts=attempts,
            errors=decode_errors(errors),  # the decode error the claim recorded
        )
    return JobRecord(
        envelope=env,
        state=JobState(state),
        updated_at=_utc(updated_at),
        finished_at=from_db(finished_at),
        result=_any.decode(result) if result is not None else None,
        lease_owner=lease_owner,
        lease_expires_at=from_db(lease_expires_at),
    )


def argument_filter(value: Any) -> tuple[int, str | None]:
    """How OPENJSON shows a top-level argument: (JSON type code, value text).

    Types: 0 null, 1 string, 2 number, 3 true/false, 4 array, 5 object.
    Strings compare unescaped; numbers, arrays and objects by their compact
    JSON text (so 2 and 2.0 differ, and objects must list keys in stored order).
    """
    builtins = msgspec.to_builtins(value)
    if builtins is None:
        return 0, None
    if isinstance(builtins, bool):
        return 3, "true" if builtins else "false"
    if isinstance(builtins, str):
        return 1, builtins
    if isinstance(builtins, int | float):
        return 2, encode(builtins)
    if isinstance(builtins, list):
        return 4, encode(builtins)
    return 5, encode(builtins)
