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
from datetime import datetime
from pathlib import Path
from typing import cast

from oddjob_core.errors import KeyHeld, StorageError
from oddjob_core.model import Envelope, JobState
from oddjob_core.storage import JobManagement, Storage
from oddjob_core.unique import UniqueKeys

PENDING_GRACE = 30.0


class FilesystemUniqueKeys(UniqueKeys):
    """Mixed into ``FilesystemStorage``; call ``_unique_init`` from its constructor."""

    _keys_folder: Path
    management: JobManagement  # the store's (its requeue is wrapped here for keyed jobs)
    _keys_tmp: Path

    def _unique_init(self, root: Path, tmp: Path) -> None:
        self._keys_folder = root / "keys"  # made by the first keyed add
        self._keys_tmp = tmp

    def add_unique(self, job: Envelope) -> uuid.UUID:
        if job.key is None:
            raise ValueError("add_unique needs a job with a key")
        path = self._hold_key(job)
        if isinstance(path, uuid.UUID):
            return path  # the live holder
        try:
            cast(Storage, self).add([job])
        except BaseException:
            os.unlink(path)
            raise
        return job.id

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        """A keyed job takes its key back first: ``KeyHeld`` while another live job has it."""
        record = self.management.get(job_id)
        if record is not None and record.state.finished and record.envelope.key is not None:
            env = record.envelope
            holder = self._hold_key(env)
            if isinstance(holder, uuid.UUID) and holder != job_id:
                raise KeyHeld(job_id, cast(str, env.key), env.queue, holder)
        return self.management.requeue(job_id, run_at)

    def _hold_key(self, job: Envelope) -> Path | uuid.UUID:
        """Create the holder file of ``job``'s key naming ``job.id``, or the live holder's id."""
        digest = hashlib.sha256(cast(str, job.key).encode()).hexdigest()
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
            return path
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
