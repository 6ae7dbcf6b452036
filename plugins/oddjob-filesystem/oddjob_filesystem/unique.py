"""The filesystem store's unique keys: one holder file per (queue, key).

    <root>/keys/<queue>/<sha256 of the key>     holds the id of the job that has the key

``add_unique`` creates the holder file with ``O_CREAT | O_EXCL`` (one process
wins) and then adds the job. A key is released lazily: when the holder file
names a job that finished (or was purged), the next ``add_unique`` removes the
file by renaming it away (again one process wins) and tries once more. A
holder file whose job cannot be found is kept for ``PENDING_GRACE`` seconds,
because its producer may be between creating it and adding the job.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import cast

from oddjob_core.errors import StorageError
from oddjob_core.model import Envelope, JobState
from oddjob_core.storage import JobManagement, Storage
from oddjob_core.unique import UniqueKeys

PENDING_GRACE = 30.0


class FilesystemUniqueKeys(UniqueKeys):
    """Mixed into ``FilesystemStorage``; call ``_unique_init`` from its constructor."""

    _keys_folder: Path
    _keys_tmp: Path

    def _unique_init(self, root: Path, tmp: Path) -> None:
        self._keys_folder = root / "keys"  # made by the first keyed add
        self._keys_tmp = tmp

    def add_unique(self, job: Envelope) -> uuid.UUID:
        if job.key is None:
            raise ValueError("add_unique needs a job with a key")
        digest = hashlib.sha256(job.key.encode()).hexdigest()
        path = self._keys_folder / job.queue / digest
        for _ in range(10):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                continue
            except FileExistsError:
                holder = self._live_holder(path)
                if holder is not None:
                    return holder
                continue
            try:
                os.write(fd, str(job.id).encode())
            finally:
                os.close(fd)
            try:
                cast(Storage, self).add([job])
            except BaseException:
                os.unlink(path)
                raise
            return job.id
        raise StorageError(f"could not take unique key {job.key!r} of queue '{job.queue}'")

    def _live_holder(self, path: Path) -> uuid.UUID | None:
        """The id in ``path`` if its job still waits or runs; else remove ``path`` and say None."""
        try:
            text = path.read_text()
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            holder = uuid.UUID(text)
        except ValueError:
            holder = None  # half-written by a producer right now, or torn by a crash
        if holder is not None:
            record = cast(JobManagement, self).get(holder)
            if record is not None and (record.state.waiting or record.state is JobState.RUNNING):
                return holder
            if record is None and age < PENDING_GRACE:
                return holder  # its producer is adding the job right now
        elif age < PENDING_GRACE:
            time.sleep(0.01)
            return self._live_holder(path) if path.exists() else None
        away = self._keys_tmp / f"{uuid.uuid4().hex}.key"
        try:
            os.rename(path, away)  # one process removes a stale holder; the others retry
        except FileNotFoundError:
            return None
        try:
            moved = away.read_text()
            if moved != text:  # another process replaced the stale holder since we read it
                try:
                    os.link(away, path)
                except FileExistsError:
                    pass
                return uuid.UUID(moved)
            return None
        finally:
            os.unlink(away)
