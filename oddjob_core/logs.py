"""Worker logging: readable text lines, or one JSON object per line for log shippers.

A record about a job carries it as ``extra={"job": envelope}`` (the engine does
this); a record logged by a job's own code while it runs is tied to the job
through the job context. Either way the JSON line gets ``job_id``, ``queue``,
``target`` and ``attempt``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from .engine.context import _current
from .model import Envelope

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def job_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The job a record is about: from ``extra={"job": ...}``, else the running job, else none."""
    job = getattr(record, "job", None)
    if not isinstance(job, Envelope):
        context = _current.get()
        job = context.claim.job if context is not None else None
    if job is None:
        return {}
    return {
        "job_id": str(job.id),
        "queue": job.queue,
        "target": job.target,
        "attempt": job.attempts,
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, job fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(job_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(log_format: LogFormat, level: int) -> None:
    """Send every log record to stderr in ``log_format`` (replacing earlier root handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        logging.captureWarnings(True)  # warnings become records, so every line stays JSON
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
