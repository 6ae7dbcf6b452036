"""oddjob storage backend 'filesystem': one file per job, claims by atomic rename (maildir style)."""

from .options import FilesystemOptions
from .storage import FilesystemStorage

__all__ = ["FilesystemOptions", "FilesystemStorage"]
