"""The one exception hierarchy users catch: every error names the culprit and the fix."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import AttemptError, JobRecord


class OddjobError(Exception):
    """Base class of every error oddjob raises on purpose."""


class ConfigError(OddjobError):
    """A setting is missing, malformed or names something that is not installed."""


class BackendNotFound(ConfigError):
    """The configured storage or execution backend is not installed or failed to load."""


class PluginConflict(OddjobError):
    """Two installed distributions register a backend under the same name."""


class EnqueueError(OddjobError):
    """A call cannot become a job: bad target, bad arguments, or unencodable values."""


class TargetError(OddjobError):
    """A stored job names a target this worker must not or cannot run."""


class TargetNotAllowed(TargetError):
    """The target is neither registered with ``@job`` nor under a trusted module prefix."""


class TargetMissing(TargetError):
    """The target's module or attribute no longer exists in this worker."""


class PayloadError(OddjobError):
    """A stored job or its arguments cannot be decoded (corrupt or incompatible)."""


class StorageError(OddjobError):
    """The storage backend failed; the message names the server, never the password."""


class StorageUnavailable(StorageError):
    """The storage server cannot be reached (after bounded retries)."""


class LeaseLost(StorageError):
    """An outcome write was refused: the claim's fencing token no longer owns the job.

    Raised when a worker whose lease expired tries to record an outcome after
    another worker claimed the job again; the newer owner's outcome stands.
    """


class UnsupportedOperation(StorageError):
    """The backend cannot do this (e.g. it does not implement ``JobManagement``)."""


class KeyHeld(OddjobError):
    """A keyed job cannot become live again: another waiting or running job holds its key."""

    def __init__(self, job_id: uuid.UUID, key: str, queue: str, holder: uuid.UUID) -> None:
        super().__init__(
            f"job {job_id} cannot be requeued: its unique key {key!r} of queue '{queue}' is "
            f"held by job {holder}, which is waiting or running; requeue it once that job "
            "has finished (or cancel that job first)"
        )
        self.holder = holder


class JobNotFound(OddjobError):
    """No job with that id exists in the store."""


class JobFailed(OddjobError):
    """``app.wait``: the job failed for good (or was cancelled); ``error`` is its last error."""

    def __init__(self, message: str, record: JobRecord, error: AttemptError | None) -> None:
        super().__init__(message)
        self.record = record
        self.error = error


class WaitTimeout(OddjobError, TimeoutError):
    """``app.wait``: the job did not finish within the timeout."""


class UntrustedTargetWarning(UserWarning):
    """A job was stored although no worker with this configuration would run its target."""
