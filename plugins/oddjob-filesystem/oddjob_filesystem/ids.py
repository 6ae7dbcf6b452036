"""The id index: one empty marker file per stored job, so ``add`` keeps the first job of an id.

    <root>/ids/<last two hex digits of the id>/<id>

``add`` creates a job's marker with ``O_CREAT | O_EXCL`` before renaming the
job file into place: the process whose create succeeds stores the job, every
other add of that id (another worker enqueueing the same schedule tick, a
retried add) sees the marker and stores nothing. Purging a job removes its
marker. Crash window: a producer killed between the marker and the rename
loses that job, and a retried add of it is skipped; an add that fails with an
error removes the markers of the jobs it did not store.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from oddjob_core.model import Envelope


class IdIndex:
    """Markers of the job ids a store holds."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "ids"  # made by the first add

    def _path(self, job_id: str) -> str:
        return os.path.join(self.folder, job_id[-2:], job_id)

    def reserve(self, jobs: Sequence[Envelope]) -> list[Envelope]:
        """Mark each job's id; return the jobs whose id was new (first of the batch wins too)."""
        fresh: list[Envelope] = []
        for env in jobs:
            path = self._path(str(env.id))
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
            os.close(fd)
            fresh.append(env)
        return fresh

    def forget(self, job_ids: Iterable[uuid.UUID | str]) -> None:
        """Remove markers (the jobs were purged, or an add failed before storing them)."""
        for job_id in job_ids:
            try:
                os.unlink(self._path(str(job_id)))
            except FileNotFoundError:
                pass
