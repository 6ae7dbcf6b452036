"""oddjob execution backend 'threads': a coordinator and N worker threads per queue."""

from .executor import ThreadsExecutor

__all__ = ["ThreadsExecutor"]
