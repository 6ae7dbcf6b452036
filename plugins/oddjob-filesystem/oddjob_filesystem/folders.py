"""The job folders of one store: queue paths, writing waiting jobs, reading records, ready listings.

A job's folder and file name say its state; its content (``StoredJob``) is
the envelope and, once finished, the result. Invariant: a job file's
``attempts`` counts the attempts started *before* the current claim (the
running name holds the current count), so a claim never rewrites the file.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from oddjob_core.errors import LeaseLost
from oddjob_core.model import Claim, Envelope, JobRecord, JobState
from oddjob_core.poison import check_queue_name

from . import files, layout
from .files import FileWriter

CORRUPT = ".corrupt"  # suffix of an undecodable job's original bytes, beside its failed record


class StoredJob(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A job file's content (its folder and name say its state)."""

    envelope: Envelope
    updated_at: datetime
    finished_at: datetime | None = None
    result: Any = None


encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder(StoredJob).decode


def buckets(paths: layout.QueuePaths) -> list[str]:
    """The scheduled/<hour> folder names of a queue, earliest first."""
    return sorted(e.name for e in files.scan(paths.scheduled) if e.name.isdigit() and e.is_dir())


def waiting_folders(paths: layout.QueuePaths) -> list[str]:
    """``ready`` and every ``scheduled/<hour>`` folder, earliest hour first."""
    return ["ready", *(f"scheduled/{b}" for b in buckets(paths))]


def waiting_path(paths: layout.QueuePaths, env: Envelope, state: JobState, now: datetime) -> Path:
    """Where a waiting job's file goes: ready/ when due, else its scheduled/<hour> folder."""
    if env.run_at <= now:
        return paths.ready / layout.ready_name(env.priority, env.run_at, env.id, state)
    bucket = paths.scheduled / layout.bucket_of(layout.micros(env.run_at))
    return bucket / layout.scheduled_name(env.priority, env.run_at, env.id, state)


class JobFolders:
    """The folders under one root, and this process's cached listing of each ready/."""

    def __init__(self, root: Path, writer: FileWriter, refresh_interval: float) -> None:
        self.root = root
        self.writer = writer
        self.refresh_interval = refresh_interval
        self._paths: dict[str, layout.QueuePaths] = {}
        self._ready: dict[str, collections.deque[str]] = {}
        self._listed_at: dict[str, float] = {}
        self.lock = threading.Lock()  # guards the ready listings

    def queue(self, queue: str) -> layout.QueuePaths:
        """The folders of ``queue``, created on first use."""
        paths = self._paths.get(queue)
        if paths is None:
            check_queue_name(queue)
            if queue.strip(".") == "":  # allowed by the core's rule, but a path trick here
                raise ValueError(f"queue name {queue!r} is invalid: it must not be only dots")
            paths = layout.QueuePaths(self.root, queue)
            paths.create()
            self._paths[queue] = paths
        return paths

    def queue_names(self, only: str | None = None) -> list[str]:
        """Every queue with a folder (or just ``only``, if it has one)."""
        if only is not None:
            return [only] if (self.root / "queues" / only).is_dir() else []
        return sorted(p.name for p in (self.root / "queues").iterdir() if p.is_dir())

    # -- writing ---------------------------------------------------------------------

    def rename_into(self, source: Path, destination: Path) -> None:
        """Rename, creating a scheduled/<hour> folder on the way (promotion removes old ones)."""
        for _ in range(5):
            try:
                os.rename(source, destination)
                return
            except FileNotFoundError:
                folder = destination.parent
                if folder.parent.name != "scheduled" or not os.path.exists(source):
                    raise
                try:
                    folder.mkdir()
                except FileExistsError:
                    continue
                self.writer.sync_folder(folder.parent)
        os.rename(source, destination)

    def put(self, destination: Path, data: bytes) -> None:
        """Write a waiting job's file (tmp + fsync + rename + folder fsync)."""
        self.rename_into(self.writer.stage(data), destination)
        self.writer.sync_folder(destination.parent)

    def fence(self, claim: Claim) -> tuple[layout.QueuePaths, Path]:
        """Move the claim's running file into finishing/: proof this claim still owns the job.

        The first step of every outcome but the fast-path complete; ``LeaseLost``
        if the file is gone (another worker re-claimed the job, or it was cancelled).
        """
        paths = self.queue(claim.job.queue)
        taken = paths.finishing / layout.finishing_name(str(claim.receipt))
        try:
            os.rename(paths.running / str(claim.receipt), taken)
        except FileNotFoundError:
            raise LeaseLost(
                f"job {claim.job.id} is no longer leased by this claim (its lease expired and "
                "another worker claimed it, or it was cancelled); outcome not recorded"
            ) from None
        return paths, taken

    # -- ready listings ----------------------------------------------------------------

    def changed(self, queue: str) -> None:
        """New jobs may be ready in ``queue``: list ready/ again at the next claim."""
        self._listed_at[queue] = 0.0

    def ready_names(
        self, paths: layout.QueuePaths, queue: str, now: datetime, *, force: bool = False
    ) -> tuple[collections.deque[str], bool]:
        """This process's sorted view of ready/, and whether it was listed just now.

        Listed again when used up or older than ``refresh_interval``; a stale name
        costs one failed open, and a name taken meanwhile fails its rename.
        Call with ``lock`` held.
        """
        names = self._ready.get(queue)
        fresh = time.monotonic() - self._listed_at.get(queue, 0.0) < self.refresh_interval
        if names and fresh and not force:
            return names, False
        self._promote_due(paths, now)
        names = collections.deque(sorted(files.job_files(paths.ready)))
        self._ready[queue] = names
        self._listed_at[queue] = time.monotonic()
        return names, True

    def _promote_due(self, paths: layout.QueuePaths, now: datetime) -> None:
        """Move scheduled jobs that are now due into ready/ (names only; no file is read)."""
        now_us = layout.micros(now)
        for bucket in buckets(paths):
            if int(bucket) > now_us:
                break  # this hour has not begun: neither it nor any later one holds a due job
            folder = paths.scheduled / bucket
            for name in sorted(files.job_files(folder)):
                parsed = layout.parse_waiting(name, "scheduled")
                if parsed is None:
                    continue
                if parsed.run_at_us > now_us:
                    break
                try:
                    os.rename(folder / name, paths.ready / parsed.promoted())
                except FileNotFoundError:
                    continue  # another process promoted or cancelled it
            if int(bucket) + layout.BUCKET_US <= now_us:
                try:
                    folder.rmdir()  # an hour gone by; fails harmlessly while a job is still in it
                except OSError:
                    pass

    # -- reading -----------------------------------------------------------------------

    def locate(self, job_id: str, queue: str | None = None) -> tuple[str, str, str] | None:
        """(queue, folder, file name) of a job, looking in every folder of every queue."""
        for q in self.queue_names(queue):
            paths = self.queue(q)
            for folder in layout.FINISHED_DIRS:
                name = layout.finished_name(uuid.UUID(job_id))
                if (paths.folder(folder) / name).exists():
                    return q, folder, name
            for folder in ("running", "finishing", *waiting_folders(paths)):
                for name in files.job_files(paths.folder(folder)):
                    if layout.job_id_of(name) == job_id:
                        return q, folder, name
        return None

    def record(self, queue: str, folder: str, name: str) -> JobRecord | None:
        """The job in ``folder``/``name`` of ``queue`` as a record (None: gone or unreadable)."""
        path = self.queue(queue).folder(folder) / name
        try:
            stat = path.stat()
            stored = decode(path.read_bytes())
        except FileNotFoundError:
            return None
        except Exception:  # undecodable (RecursionError too): a claim fails it; not listed here
            return None
        env = stored.envelope
        if folder == "succeeded" and stored.finished_at is None:  # the fast-path complete
            finished = layout.from_micros(stat.st_ctime_ns // 1000)
            return JobRecord(
                envelope=msgspec.structs.replace(env, attempts=env.attempts + 1),
                state=JobState.SUCCEEDED,
                updated_at=finished,
                finished_at=finished,
            )
        if folder in layout.FINISHED_DIRS:
            state = layout.FINISHED_DIRS[folder]
        elif folder in ("running", "finishing"):
            finishing = layout.parse_finishing(name) if folder == "finishing" else None
            running = layout.parse_running(finishing.running if finishing else name)
            env = msgspec.structs.replace(
                env, attempts=running.attempts if running else env.attempts
            )
            return JobRecord(
                envelope=env,
                state=JobState.RUNNING,
                updated_at=stored.updated_at,
                lease_owner=running.owner if running else None,
                lease_expires_at=layout.from_micros(stat.st_mtime_ns // 1000),
            )
        else:
            parsed = layout.parse_waiting(name, folder)
            state = parsed.state if parsed else JobState.READY
        return JobRecord(
            envelope=env,
            state=state,
            updated_at=stored.updated_at,
            finished_at=stored.finished_at,
            result=stored.result,
        )

    def records(self, queue: str | None) -> Iterator[JobRecord]:
        """Every readable job of ``queue`` (default: of every queue)."""
        for q in self.queue_names(queue):
            paths = self.queue(q)
            folders = [f for f in layout.ALL_DIRS if f not in layout.WAITING_DIRS]
            for folder in [*waiting_folders(paths), *folders]:
                for name in files.job_files(paths.folder(folder)):
                    record = self.record(q, folder, name)
                    if record is not None:
                        yield record
