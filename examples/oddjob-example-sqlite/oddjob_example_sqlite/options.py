"""The ``[tool.oddjob.example-sqlite]`` options table, validated before the storage is built."""

from __future__ import annotations

import msgspec


class SqliteOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Options of ``storage = "example-sqlite"``.

    ``path`` is the database file (created with its folder if missing; relative
    paths are relative to the working directory). Every worker process on the
    host that opens the same file shares the same jobs. ``busy_timeout`` is how
    many seconds a write waits for another process's write lock before failing.
    """

    path: str = "oddjob.sqlite3"
    busy_timeout: float = 30.0

    def __post_init__(self) -> None:
        # msgspec turns a ValueError here into "bad config value at example-sqlite.path: ..."
        if not self.path or self.path == ":memory:" or self.path.startswith("file::memory:"):
            raise ValueError(
                f"path must name a database file shared by every worker, got {self.path!r}; "
                "use e.g. path = 'oddjob.sqlite3', or storage = 'memory' for an in-process store"
            )
        if self.busy_timeout <= 0:
            raise ValueError(f"busy_timeout must be > 0 seconds, got {self.busy_timeout}")
