"""Corrupt messages stay visible: a failed message whose body is no envelope is listed too.

A message that cannot be decoded (or routed) is moved to the failed queue with
its body untouched and the reason in a header (see the claim). ``failed_jobs``
shows it as a stand-in record, so ``oddjob jobs list --state failed`` and
``counts`` agree; its id is the message id when that is a UUID, else one derived
from the body.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from oddjob_core.model import AttemptError, Envelope, JobRecord, JobState
from oddjob_core.poison import CorruptJob


def corrupt_record(
    queue: str, message_id: Any, body: bytes, headers: Any, reason_header: str, at: datetime
) -> JobRecord:
    """A failed record for an undecodable message of ``queue`` (its reason from the header)."""
    try:
        job_id = uuid.UUID(str(message_id))
    except ValueError:
        job_id = uuid.UUID(bytes=hashlib.sha256(body).digest()[:16], version=4)
    reason = (headers or {}).get(reason_header) or "the message body is not a job envelope"
    if isinstance(reason, bytes):
        reason = reason.decode(errors="replace")
    envelope = Envelope(
        id=job_id,
        queue=queue,
        target=f"<corrupt message {message_id}>",
        arguments={},
        run_at=at,
        created_at=at,
        errors=(AttemptError(attempt=0, type=CorruptJob.type_name, message=str(reason), at=at),),
    )
    return JobRecord(envelope=envelope, state=JobState.FAILED, updated_at=at, finished_at=at)
