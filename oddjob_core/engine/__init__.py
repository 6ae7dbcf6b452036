"""The engine: running one claimed job end to end, and the contract executors implement."""

from .context import JobCancelled, JobContext, current_job
from .executor import Executor
from .runner import JobRunner
from .runtime import Runtime

__all__ = ["Executor", "JobCancelled", "JobContext", "JobRunner", "Runtime", "current_job"]
