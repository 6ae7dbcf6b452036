"""The id index: one empty marker file per stored job, so ``add`` keeps the first job of an id.

    <root>/ids/<last two hex digits of the id>/<id>
    <root>/ids/adding/<host>@<boot>@<pid>@live    "queue id" lines: this process's adds in flight

``add`` creates a job's marker with ``O_CREAT | O_EXCL`` before renaming the
job file into place: the process whose create succeeds stores the job, every
other add of that id (another worker enqueueing the same schedule tick, a
retried add) sees the marker and stores nothing. Purging a job removes its
marker; an add that fails with an error removes the markers of its jobs.

Crash window: a producer killed between a marker and its rename leaves a
marker without a job. So before creating markers, ``add`` appends the ids to
its process's ``adding`` file (one write per batch, emptied when no add is in
flight). An add that meets existing markers looks for ``adding`` files of
processes that are gone (same rule as an outcome in ``finishing/``: pid gone
on this host or the host rebooted; another host's after 5 minutes), takes
each over by renaming it (one process wins), removes the markers of its ids
whose job is nowhere in the queue's folders, and tries those ids again: a
retried add of a crashed producer's job stores it. Left: a listing that
misses a job moving backwards between folders (a retry) at that very moment
would let that id be stored twice.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from oddjob_core.model import Envelope

from . import files, layout
from .folders import JobFolders, waiting_folders
from .recovery import ORPHAN_GRACE, writer_gone

LIVE = "live"


def stored_among(folders: JobFolders, queue: str, wanted: set[str]) -> set[str]:
    """The ids of ``wanted`` that have a job file in ``queue`` (listed twice, in state order)."""
    paths = folders.queue(queue)
    found: set[str] = set()
    for _ in range(2):  # a job moving between folders during one listing shows in the other
        for folder in (*waiting_folders(paths), "running", "finishing", *layout.FINISHED_DIRS):
            found.update(layout.job_id_of(name) for name in files.job_files(paths.folder(folder)))
    return wanted & found


def _make_marker(path: str, source: Path | None) -> None:
    """A link to ``source`` at ``path``, or an empty file; FileExistsError if ``path`` exists."""
    if source is not None:
        os.link(source, path)
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


class IdIndex:
    """Markers of the job ids a store holds, and this process's adds in flight."""

    def __init__(self, root: Path, folders: JobFolders) -> None:
        self.folder = root / "ids"  # made by the first add
        self.adding = self.folder / "adding"
        self.folders = folders
        self._lock = threading.Lock()
        self._in_flight = 0
        self._fd: int | None = None
        self._fd_pid = 0

    def _path(self, job_id: str) -> str:
        return os.path.join(self.folder, job_id[-2:], job_id)

    def reserve(
        self, jobs: Sequence[Envelope], staged: Mapping[uuid.UUID, Path] | None = None
    ) -> list[Envelope]:
        """Mark each job's id; return the jobs whose id was new (first of the batch wins too).

        With ``staged`` (each job's file in tmp/, not yet renamed in) a marker is a
        hard link to that file: a name, not a second file to create (creating files
        is what an add pays most for). It keeps the job's first content on disk
        until the job is purged. An empty marker and a link count the same.

        Every call must be followed by ``done()`` once the jobs are renamed in
        (or their markers forgotten); ``reserve`` calls it itself when it raises.
        """
        self._begin(jobs)
        fresh: list[Envelope] = []
        try:
            taken = self._mark(jobs, fresh, staged or {})
            if taken and self._release_orphans():
                self._mark(taken, fresh, staged or {})
        except BaseException:
            self.forget(env.id for env in fresh)
            self.done()
            raise
        return fresh

    def _mark(
        self, jobs: Iterable[Envelope], fresh: list[Envelope], staged: Mapping[uuid.UUID, Path]
    ) -> list[Envelope]:
        """Create the markers of ``jobs``: the new ones go to ``fresh``; return the taken ones."""
        taken: list[Envelope] = []
        for env in jobs:
            path = self._path(str(env.id))
            for attempt in (1, 2):
                try:
                    _make_marker(path, staged.get(env.id))
                except FileExistsError:
                    taken.append(env)
                except FileNotFoundError:
                    if attempt == 2:
                        raise
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    continue
                else:
                    fresh.append(env)
                break
        return taken

    def forget(self, job_ids: Iterable[uuid.UUID | str]) -> None:
        """Remove markers (the jobs were purged, or an add failed before storing them)."""
        for job_id in job_ids:
            try:
                os.unlink(self._path(str(job_id)))
            except FileNotFoundError:
                pass

    # -- adds in flight ------------------------------------------------------------------

    def _begin(self, jobs: Sequence[Envelope]) -> None:
        """Record ``jobs`` as in flight in this process's ``adding`` file (one write)."""
        lines = "".join(f"{env.queue} {env.id}\n" for env in jobs).encode()
        with self._lock:
            if self._fd is None or self._fd_pid != os.getpid() or os.fstat(self._fd).st_nlink == 0:
                # first add, a forked child, or the file was taken over (another host's
                # process judged this one gone after 5 idle minutes): start a new one
                self._fd = self._open_own()
                self._fd_pid = os.getpid()
                self._in_flight = 0
            os.write(self._fd, lines)
            self._in_flight += 1

    def _open_own(self) -> int:
        name = f"{layout.HOST}@{layout.BOOT}@{os.getpid()}@{LIVE}"
        self.adding.mkdir(parents=True, exist_ok=True)
        return os.open(self.adding / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def done(self) -> None:
        """An add's jobs are renamed in (or forgotten); empty the file when none is in flight."""
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0 and self._fd is not None:
                os.ftruncate(self._fd, 0)

    def _release_orphans(self) -> bool:
        """Remove the markers a gone process left without a job; True if there were any."""
        released = False
        for entry in files.scan(self.adding):
            writer = layout.parse_finishing(entry.name)
            if writer is None or (writer.host, writer.pid) == (layout.HOST, os.getpid()):
                continue
            try:
                age = time.time() - entry.stat().st_mtime
            except FileNotFoundError:
                continue
            if not writer_gone(writer, max(age, ORPHAN_GRACE)):
                continue
            adopted = self.adding / f"{layout.HOST}@{layout.BOOT}@{os.getpid()}@{uuid.uuid4().hex}"
            try:
                os.rename(entry.path, adopted)  # one process takes over a gone writer's list
            except FileNotFoundError:
                continue
            released |= self._release_listed(adopted)
            os.unlink(adopted)
        return released

    def _release_listed(self, listing: Path) -> bool:
        by_queue: dict[str, set[str]] = {}
        for line in listing.read_text().splitlines():
            queue, _, job_id = line.partition(" ")
            if job_id:
                by_queue.setdefault(queue, set()).add(job_id)
        orphans = [
            job_id
            for queue, ids in by_queue.items()
            for job_id in ids - stored_among(self.folders, queue, ids)
        ]
        self.forget(orphans)
        return bool(orphans)
