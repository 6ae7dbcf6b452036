"""Management of the filesystem store: get, search, counts, cancel, requeue, purge, delete."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import msgspec

from oddjob_core.clock import utcnow
from oddjob_core.model import JobQuery, JobRecord, JobState, Page
from oddjob_core.storage import JobManagement

from . import files, layout
from .folders import CORRUPT, JobFolders, StoredJob, decode, encode, waiting_folders, waiting_path
from .ids import IdIndex


class Management(JobManagement):
    """Looks jobs up by walking the folders (no index): fine for the sizes this store serves."""

    def __init__(self, folders: JobFolders, ids: IdIndex, settle: Callable[[], None]) -> None:
        self.folders = folders
        self.ids = ids
        self.settle = settle  # before every read: journaled jobs are files (``journal``)

    def get(self, job_id: uuid.UUID) -> JobRecord | None:
        self.settle()
        found = self.folders.locate(str(job_id))
        return self.folders.record(*found) if found else None

    def search(self, query: JobQuery) -> Page:
        self.settle()
        return Page.of(self.folders.records(query.queue), query)

    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        self.settle()
        out: dict[str, dict[JobState, int]] = {}
        for q in self.folders.queue_names(queue):
            paths = self.folders.queue(q)
            per: dict[JobState, int] = {}
            for folder in waiting_folders(paths):
                for name in files.job_files(paths.folder(folder)):
                    parsed = layout.parse_waiting(name, folder)
                    if parsed is not None:
                        per[parsed.state] = per.get(parsed.state, 0) + 1
            running = sum(1 for _ in files.job_files(paths.running))
            running += sum(1 for _ in files.job_files(paths.finishing))
            if running:
                per[JobState.RUNNING] = running
            for folder, state in layout.FINISHED_DIRS.items():
                n = sum(1 for _ in files.job_files(paths.folder(folder)))
                if n:
                    per[state] = n
            out[q] = per
        return out

    def cancel(self, job_id: uuid.UUID) -> bool:
        self.settle()
        for _ in range(3):  # a scheduled job may be promoted to ready/ while we look
            found = self.folders.locate(str(job_id))
            if found is None or not layout.is_waiting(found[1]):
                return False
            queue, folder, name = found
            paths = self.folders.queue(queue)
            target = paths.cancelled / layout.finished_name(job_id)
            try:
                os.rename(paths.folder(folder) / name, target)
            except FileNotFoundError:
                continue  # claimed or promoted in the meantime: look again
            self._stamp_finished(target)
            return True
        return False

    def delete(self, job_id: uuid.UUID) -> bool:
        self.settle()
        for _ in range(3):  # a waiting job may be promoted or claimed while we look
            found = self.folders.locate(str(job_id))
            if found is None or found[1] in ("running", "finishing"):
                return False  # unknown, or a worker holds it (finishing/: its outcome lands)
            queue, folder, name = found
            path = self.folders.queue(queue).folder(folder) / name
            try:
                os.unlink(path)  # a claim renaming it away meanwhile makes this fail: look again
            except FileNotFoundError:
                continue
            self.ids.forget([job_id])
            files.remove_sidecar(f"{path}{CORRUPT}")
            return True
        return False

    def _stamp_finished(self, path: Path) -> None:
        stored = decode(path.read_bytes())
        now = utcnow()
        self.folders.writer.write(
            path, encode(msgspec.structs.replace(stored, updated_at=now, finished_at=now))
        )

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        self.settle()
        found = self.folders.locate(str(job_id))
        if found is None or found[1] not in layout.FINISHED_DIRS:
            return False
        queue, folder, name = found
        paths = self.folders.queue(queue)
        # parked under a running-style name: if we crash before the rewrite, orphan
        # recovery runs the job anyway, which is what the requeue asked for
        taken = paths.finishing / layout.finishing_name(
            layout.running_name(job_id, "requeue", 0, "requeue")
        )
        try:
            os.rename(paths.folder(folder) / name, taken)
        except FileNotFoundError:
            return False
        stored = decode(taken.read_bytes())
        now = utcnow()
        when = run_at or now
        env = msgspec.structs.replace(stored.envelope, run_at=when, attempts=0)
        state = JobState.READY if when <= now else JobState.SCHEDULED
        self.folders.put(
            waiting_path(paths, env, state, now), encode(StoredJob(envelope=env, updated_at=now))
        )
        files.unlink(taken)  # gone only if restored as an orphan meanwhile (a stall > grace)
        self.folders.changed(queue)
        return True

    def purge_finished(
        self, states: tuple[JobState, ...], older_than: datetime | None, queue: str | None
    ) -> int:
        self.settle()
        cutoff_ns = int(older_than.timestamp() * 1e9) if older_than is not None else None
        removed = 0
        chosen = [f for f, s in layout.FINISHED_DIRS.items() if s in states]
        for q in self.folders.queue_names(queue):
            paths = self.folders.queue(q)
            for folder in chosen:
                for entry in files.scan(paths.folder(folder)):
                    if not entry.name.endswith(layout.SUFFIX):
                        continue  # a .corrupt sidecar goes with its job below
                    try:
                        if cutoff_ns is not None and entry.stat().st_ctime_ns >= cutoff_ns:
                            continue
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        continue
                    self.ids.forget([entry.name.removesuffix(layout.SUFFIX)])
                    files.remove_sidecar(entry.path + CORRUPT)
                    removed += 1
        return removed
