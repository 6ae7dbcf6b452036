"""Poison isolation: the one path every backend decodes and routes stored jobs through.

The rule (part of the storage contract): a stored job that cannot be decoded,
routed or written back is failed on its own, with the reason, and never
blocks, repeats or crashes the other jobs of its claim or batch.

"Cannot be decoded" means *any* exception while turning stored bytes into an
``Envelope`` or its arguments into the annotated types, not only msgspec's
decode and validation errors: a document nested deeper than the worker's
recursion limit raises ``RecursionError`` (a producer that raised its own
limit can enqueue one, and so can a row written by SQL); a huge one may raise
``MemoryError``. "Cannot be routed" means the decoded envelope disagrees with
where it is stored (another queue, another id, an invalid queue name, an
attempt counter at its maximum): outcome writes would miss it and it would
run again forever.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable
from typing import TypeVar

from .clock import utcnow
from .errors import PayloadError
from .model import AttemptError, Envelope

T = TypeVar("T")
S = TypeVar("S")

#: Queue names become file, table and broker names: letters, digits, ``_.-``, at most 100.
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


def check_queue_name(name: str) -> str:
    """Return ``name`` if it is a valid queue name, else raise ``ValueError`` saying the rule.

    The one validator behind ``@job(queue=...)``, ``app.options(queue=...)``,
    the configuration's queue tables and ``oddjob worker -q``.
    """
    if not isinstance(name, str) or not QUEUE_NAME.fullmatch(name) or not name.strip("."):
        raise ValueError(
            f"queue name {name!r} is invalid: use 1-100 letters, digits, '_', '.' or '-', "
            "and not only dots"
        )
    return name


class CorruptJob(PayloadError):
    """A stored job that cannot be decoded or routed: it is failed without running."""

    #: ``AttemptError.type`` of the error recorded for such a job
    type_name = "oddjob_core.poison.CorruptJob"


def describe(exc: BaseException) -> str:
    """A one-line reason for a decode failure (RecursionError says what the limit is)."""
    if isinstance(exc, RecursionError):
        return (
            f"nested deeper than this worker's recursion limit ({sys.getrecursionlimit()}): {exc}"
        )
    if isinstance(exc, CorruptJob):
        return str(exc)
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def decode_stored(decode: Callable[[S], T], data: S, *, what: str) -> T:
    """``decode(data)``; any exception becomes ``CorruptJob`` naming ``what`` and the reason."""
    try:
        return decode(data)
    except Exception as exc:  # RecursionError, MemoryError, msgspec errors, a bad column...
        raise CorruptJob(f"{what} cannot be decoded: {describe(exc)}") from exc


def check_route(
    env: Envelope, *, queue: str | None = None, job_id: uuid.UUID | None = None, what: str
) -> Envelope:
    """Refuse an envelope that disagrees with where it is stored (``CorruptJob``).

    ``queue`` is the queue it was claimed from, ``job_id`` the id the store
    files it under (row key, file name, message id); None skips that check.
    """
    try:
        check_queue_name(env.queue)
    except ValueError as exc:
        raise CorruptJob(f"{what} cannot be routed: {exc}") from None
    if queue is not None and env.queue != queue:
        raise CorruptJob(
            f"{what} cannot be routed: its envelope names queue {env.queue!r} but it is "
            f"stored in queue {queue!r} (copied or moved by hand?)"
        )
    if job_id is not None and env.id != job_id:
        raise CorruptJob(
            f"{what} cannot be routed: its envelope's id {env.id} differs from the id it "
            f"is stored under ({job_id}; copied by hand?)"
        )
    return env


def corrupt_error(attempt: int, exc: BaseException) -> AttemptError:
    """The error recorded on a job failed because it cannot be decoded or routed."""
    return AttemptError(
        attempt=attempt,
        type=CorruptJob.type_name,
        message=f"{describe(exc)}; the job was failed without running",
        at=utcnow(),
    )
