"""Turning rows into envelopes, claims and records, and jobs into insert parameters.

The stored ``envelope`` jsonb is the job as enqueued. The columns ``attempts``,
``run_at`` and ``errors`` change as the job runs and override those envelope
fields, so no write ever has to rewrite the jsonb document.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from psycopg.adapt import Buffer, Dumper
from psycopg.postgres import types as pg_types
from psycopg.pq import Format

from oddjob_core.model import AttemptError, Envelope, JobRecord, JobState

_envelope = msgspec.json.Decoder(Envelope)
_errors = msgspec.json.Decoder(tuple[AttemptError, ...])
_any = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()

EMPTY_ERRORS = b"[]"
MAX_ATTEMPTS = 2**31 - 1  # the attempts column is an integer; a claim saturates there


def encode(value: Any) -> str:
    """JSON text for a jsonb parameter."""
    return _encoder.encode(value).decode()


def decode_errors(raw: bytes | None) -> tuple[AttemptError, ...]:
    """The ``errors`` column (a JSON array of attempt errors)."""
    if not raw or raw == EMPTY_ERRORS:
        return ()
    return _errors.decode(raw)


def envelope_from(raw: bytes, attempts: int, run_at: datetime, errors: bytes | None) -> Envelope:
    """Decode the stored envelope and apply the authoritative columns; raises on corrupt data."""
    env = _envelope.decode(raw)
    if not isinstance(attempts, int) or not 0 <= attempts < MAX_ATTEMPTS:
        raise ValueError(
            f"its attempts column holds {attempts} (at or past the integer maximum, "
            f"{MAX_ATTEMPTS}): written by hand?"
        )
    return msgspec.structs.replace(
        env, attempts=attempts, run_at=run_at.astimezone(UTC), errors=decode_errors(errors)
    )


def fallback_envelope(row: Sequence[Any]) -> Envelope:
    """An envelope rebuilt from the scalar columns alone, for showing a corrupt job."""
    job_id, queue, target, priority, run_at, attempts, created_at = row
    return Envelope(
        id=job_id,
        queue=queue,
        target=target,
        arguments={},
        run_at=run_at.astimezone(UTC),
        created_at=created_at.astimezone(UTC),
        priority=priority,
        attempts=attempts,
    )


#: Columns ``record_from`` expects, in order.
RECORD_COLUMNS = (
    "id, queue, target, priority, run_at, attempts, created_at, envelope, errors, state, "
    "updated_at, finished_at, result, lease_owner, lease_expires_at"
)


def record_from(row: Sequence[Any]) -> JobRecord:
    """A management record; a corrupt envelope is shown from its columns instead of failing."""
    (
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
        env = fallback_envelope((job_id, queue, target, priority, run_at, attempts, created_at))
        with contextlib.suppress(Exception):  # the reason it failed, if that column decodes
            env = msgspec.structs.replace(env, errors=decode_errors(errors))
    return JobRecord(
        envelope=env,
        state=JobState(state),
        updated_at=updated_at.astimezone(UTC),
        finished_at=finished_at.astimezone(UTC) if finished_at else None,
        result=_any.decode(result) if result is not None else None,
        lease_owner=lease_owner,
        lease_expires_at=lease_expires_at.astimezone(UTC) if lease_expires_at else None,
    )


def insert_document(jobs: Sequence[Envelope]) -> str:
    """The batch as one JSON array of envelopes: the single parameter of the insert."""
    return _encoder.encode(jobs).decode()


class EncodedJson(bytes):
    """JSON text encoded by msgspec already, to be sent as jsonb without a second encoding."""


class EncodedJsonbBinaryDumper(Dumper):
    """Binary jsonb for ``EncodedJson``: the version byte, then the text (used by COPY)."""

    format = Format.BINARY
    oid = pg_types["jsonb"].oid

    def dump(self, obj: Buffer) -> bytes:
        return b"\x01" + bytes(obj)


def is_new(job: Envelope) -> bool:
    """A job never attempted: its attempts and errors columns take their defaults."""
    return job.attempts == 0 and not job.errors


def copy_rows(jobs: Sequence[Envelope], now: datetime) -> list[tuple[Any, ...]]:
    """Rows for the ``copy_new`` statement; a job due by ``now`` is 'ready', a later one 'scheduled'."""
    encode_envelope = _encoder.encode
    return [
        (
            job.id,
            job.queue,
            job.target,
            "ready" if job.run_at <= now else "scheduled",
            job.priority,
            job.run_at,
            EncodedJson(encode_envelope(job)),
            job.created_at,
        )
        for job in jobs
    ]
