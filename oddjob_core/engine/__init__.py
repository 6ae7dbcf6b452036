"""The engine: running one claimed job end to end, and the contract executors implement."""

from .context import JobCancelled, JobContext, current_job
from .executor import Executor
from .runner import JobRunner, Outcome, Success
from .runtime import Runtime

__all__ = [
    "Executor",
    "JobCancelled",
    "JobContext",
    "JobRunner",
    "Outcome",
    "Runtime",
    "Success",
    "current_job",
]
