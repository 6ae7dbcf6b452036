"""Envelope builders for backend tests (no target import or argument binding involved)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..clock import utcnow
from ..ids import uuid7
from ..model import Envelope, RetryPolicy


def make_envelope(
    queue: str = "default",
    *,
    target: str = "oddjob_core.testing.targets:noop",
    arguments: dict[str, Any] | None = None,
    run_at: datetime | None = None,
    delay: float = 0.0,
    priority: int = 0,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Envelope:
    """A fresh envelope due now (or at ``run_at`` / after ``delay`` seconds)."""
    now = utcnow()
    return Envelope(
        id=uuid7(),
        queue=queue,
        target=target,
        arguments={"n": 1, "s": "x"} if arguments is None else arguments,
        run_at=run_at or now + timedelta(seconds=delay),
        created_at=now,
        priority=priority,
        retry=retry or RetryPolicy(),
        timeout=timeout,
    )
