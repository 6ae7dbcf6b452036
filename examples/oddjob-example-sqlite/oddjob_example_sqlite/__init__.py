"""oddjob-example-sqlite: an example third-party storage backend on one SQLite file."""

from .options import SqliteOptions
from .storage import SqliteStorage

__all__ = ["SqliteOptions", "SqliteStorage"]
