"""The engine: running one claimed job end to end, and the contract executors implement."""

from .burst import DEFAULT_BURST_WAIT, BurstClock
from .context import JobCancelled, JobContext, current_job
from .executor import Executor
from .leases import LeaseKeeper
from .runner import Attempted, Failure, JobRunner, Lost, Outcome, Prepared, Retrying, Success
from .runtime import Runtime

__all__ = [
    "DEFAULT_BURST_WAIT",
    "Attempted",
    "BurstClock",
    "Executor",
    "Failure",
    "JobCancelled",
    "JobContext",
    "JobRunner",
    "LeaseKeeper",
    "Lost",
    "Outcome",
    "Prepared",
    "Retrying",
    "Runtime",
    "Success",
    "current_job",
]
