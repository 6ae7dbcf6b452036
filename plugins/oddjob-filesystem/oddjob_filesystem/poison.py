"""Decoding and routing job files through the core's poison rule (``oddjob_core.poison``).

A job file that cannot be decoded (any exception: a document nested past the
recursion limit raises ``RecursionError``) or whose envelope disagrees with
where the file sits (another queue: outcomes would be written to the wrong
folder and it would run forever; another id; a queue name like ``../x``) is
failed on its own by the claim, never handed to a worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Protocol, TypeVar

from oddjob_core.model import Envelope
from oddjob_core.poison import CorruptJob, check_route, decode_stored

from . import layout


class _HasEnvelope(Protocol):
    @property
    def envelope(self) -> Envelope: ...


J = TypeVar("J", bound=_HasEnvelope)


def decode_job_file(decode: Callable[[bytes], J], data: bytes, queue: str, name: str) -> J:
    """The decoded job file ``name`` of ``queue``; ``CorruptJob`` if it cannot run from there."""
    what = f"job file {name} of queue '{queue}'"
    stored = decode_stored(decode, data, what=what)
    try:
        job_id: uuid.UUID | None = uuid.UUID(layout.job_id_of(name))
    except ValueError:
        job_id = None
    check_route(stored.envelope, queue=queue, job_id=job_id, what=what)
    return stored


__all__ = ["CorruptJob", "decode_job_file"]
