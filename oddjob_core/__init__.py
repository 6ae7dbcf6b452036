"""oddjob: reliable, lightweight background jobs on the storage you already run.

from oddjob_core import Oddjob, job

@job
def send_invoice(customer_id: int, due: date) -> None: ...

app = Oddjob()
app.enqueue(send_invoice, 42, date(2026, 12, 1))
app.options(delay=timedelta(days=3)).enqueue(send_invoice, 43, date(2026, 12, 4))
"""

from .app import Oddjob
from .backends import ExecutionBackend, StorageBackend
from .engine.context import JobCancelled, JobContext, current_job
from .enqueuing import Call, Enqueuer, call
from .errors import (
    BackendNotFound,
    ConfigError,
    EnqueueError,
    JobFailed,
    JobNotFound,
    LeaseLost,
    OddjobError,
    PayloadError,
    StorageError,
    StorageUnavailable,
    TargetMissing,
    TargetNotAllowed,
    UntrustedTargetWarning,
    WaitTimeout,
)
from .hookspecs import hookimpl
from .model import AttemptError, Claim, Envelope, JobQuery, JobRecord, JobState, Page, RetryPolicy
from .retrying import JobTimeout, Retry
from .storage import Capabilities, JobManagement, QueueManagement, Storage, management_of
from .targets import job
from .version import core_version

__version__ = core_version()

__all__ = [
    "AttemptError",
    "BackendNotFound",
    "Call",
    "Capabilities",
    "Claim",
    "ConfigError",
    "EnqueueError",
    "Enqueuer",
    "Envelope",
    "ExecutionBackend",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobManagement",
    "JobNotFound",
    "JobQuery",
    "JobRecord",
    "JobState",
    "JobTimeout",
    "LeaseLost",
    "Oddjob",
    "OddjobError",
    "Page",
    "PayloadError",
    "QueueManagement",
    "Retry",
    "RetryPolicy",
    "Storage",
    "StorageBackend",
    "StorageError",
    "StorageUnavailable",
    "TargetMissing",
    "TargetNotAllowed",
    "UntrustedTargetWarning",
    "WaitTimeout",
    "call",
    "current_job",
    "hookimpl",
    "job",
    "management_of",
]
