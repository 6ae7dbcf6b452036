"""Atomic, optionally durable file writes: write to tmp/, fsync, rename into place, fsync the folder."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


class FileWriter:
    """Writes whole files atomically; ``durable`` adds the fsyncs a power cut needs."""

    def __init__(self, tmp: Path, *, durable: bool) -> None:
        self.tmp = tmp
        self.durable = durable

    def write(self, destination: Path, data: bytes, *, mtime_ns: int | None = None) -> None:
        """Replace ``destination`` with ``data`` all at once (readers never see half a file)."""
        staged = self.stage(data, mtime_ns=mtime_ns)
        os.replace(staged, destination)
        if self.durable:
            self.sync_folder(destination.parent)

    def stage(self, data: bytes, *, mtime_ns: int | None = None, sync: bool | None = None) -> Path:
        """Write ``data`` to a fresh file in tmp/ and return its path (caller renames it)."""
        path = self.tmp / f"{uuid.uuid4().hex}.new"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
            if self.durable if sync is None else sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if mtime_ns is not None:
            os.utime(path, ns=(mtime_ns, mtime_ns))
        return path

    def sync_folder(self, folder: Path) -> None:
        """Make renames into ``folder`` durable."""
        if not self.durable:
            return
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
