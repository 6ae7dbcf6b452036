"""Options of the filesystem store (the ``[tool.oddjob.filesystem]`` table)."""

from __future__ import annotations

import msgspec


class FilesystemOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``path``: the store's folder (created if missing; relative to the working directory).

    ``fsync``: flush job files and their folders to disk when jobs are added and
    outcomes recorded, so they survive a power cut (a crash of the process is
    survived either way). ``refresh_interval``: how long a worker reuses its
    listing of a queue's ready jobs before listing the folder again.
    """

    path: str = ".oddjob"
    fsync: bool = True
    refresh_interval: float = 0.5

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("path must name a folder, e.g. path = '.oddjob'")
        if self.refresh_interval < 0:
            raise ValueError(f"refresh_interval must be >= 0, got {self.refresh_interval}")
