"""Registers ``storage = "filesystem"``, the embedded default."""

from __future__ import annotations

from collections.abc import Sequence

from oddjob_core.backends import StorageBackend
from oddjob_core.hookspecs import hookimpl

from .options import FilesystemOptions
from .storage import FilesystemStorage


@hookimpl
def oddjob_storage_backends() -> Sequence[StorageBackend]:
    """Offer the filesystem store: no server, several worker processes on one host."""
    return [
        StorageBackend(
            name="filesystem",
            factory=lambda options: FilesystemStorage(options or FilesystemOptions()),
            description="one file per job in a local folder; no server; one host",
            options=FilesystemOptions,
        )
    ]
