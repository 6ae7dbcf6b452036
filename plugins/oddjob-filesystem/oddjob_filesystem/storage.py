"""The filesystem store: one file per job; a rename decides every race between processes.

Claim = rename ``ready/<key>`` to ``running/<id>~<token>~...`` (one process wins,
the others get FileNotFoundError). An outcome first renames the claim's exact
running file into ``finishing/`` (fencing: if another worker re-claimed the job,
that file is gone and the write raises ``LeaseLost``), then writes the final
file and removes the finishing copy; ``recovery`` repairs what a crash in
between leaves. ``FilesystemStorage`` wires the modules, each with one job:
``folders`` (paths, records, ready listings), ``files`` (file primitives),
``recovery``, ``management``, ``ids`` (the stored-id index) and ``keyvalue``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from oddjob_core.clock import utcnow
from oddjob_core.errors import LeaseLost, StorageError
from oddjob_core.model import AttemptError, Claim, Envelope, JobState
from oddjob_core.storage import Capabilities, DelegatedManagement, Storage

from . import files, journal, layout, space
from .files import FileWriter
from .folders import JobFolders, StoredJob, buckets, decode, encode, waiting_path
from .ids import IdIndex
from .keyvalue import FilesystemKeyValue
from .management import Management
from .options import FilesystemOptions
from .poison import CorruptJob, decode_job_file
from .recovery import Recovery
from .unique import FilesystemUniqueKeys
from .workers import FileWorkerRegistry

log = logging.getLogger("oddjob.filesystem")
RECOVERY_SCAN_EVERY = 0.25  # seconds between scans of running/ for expired leases, per queue
ADD_CHUNK = 1000  # jobs staged per flush in a batch add
WAKE_CHECK = 0.02  # seconds between checks for new jobs while idle


class FilesystemStorage(
    Storage, FilesystemUniqueKeys, DelegatedManagement, FilesystemKeyValue, FileWorkerRegistry
):
    """Jobs as files under one folder; safe for many threads and processes on one host."""

    name = "filesystem"
    capabilities = Capabilities(search_by_argument=True)

    def __init__(self, options: FilesystemOptions | None = None) -> None:
        self.options = options or FilesystemOptions()
        self.root = Path(self.options.path).resolve()
        self.tmp = self.root / "tmp"
        self.room = space.AddRoom(self.root)
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            (self.root / "queues").mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the job folder {self.root}: {exc.strerror}; set "
                "[tool.oddjob.filesystem] path to a writable folder"
            ) from exc
        self._writer = FileWriter(self.tmp, durable=self.options.fsync)
        self._kv_init(self.root, self._writer)
        self._unique_init(self.root, self.tmp)
        self.folders = JobFolders(self.root, self._writer, self.options.refresh_interval)
        self.ids = IdIndex(self.root, self.folders)
        self.recovery = Recovery(self.folders, self.tmp)
        self.journal = journal.Journal(
            self.root,
            self._writer,
            self._add_files,
            lambda jobs, records: self._add_files(jobs, records, adopted=True),
        )
        self.management = Management(self.folders, self.ids, self.journal.settle)
        self._last_recovery_scan: dict[str, float] = {}

    # -- producing -----------------------------------------------------------------

    def add(self, jobs: Sequence[Envelope]) -> None:
        """A few jobs: one journal append + fdatasync (``journal``); a batch: files at once."""
        if 0 < len(jobs) <= journal.MAX_JOBS and all(env.key is None for env in jobs):
            for env in jobs:  # refuse here what the spooler could not store (no paths built)
                try:
                    self.folders.queue(env.queue)
                    layout.check_priority(env.priority)
                except ValueError as exc:
                    raise StorageError(f"job {env.id} cannot be stored: {exc}") from exc
            self.room.check(len(jobs))
            try:
                if self.journal.append(jobs):
                    return
            except OSError as exc:  # a full disk included: never a raw OSError
                raise space.storage_error(exc, self.root, f"adding {len(jobs)} job(s)") from exc
        self._add_files(jobs)

    def _add_files(
        self, jobs: Sequence[Envelope], records: Sequence[bytes] = (), *, adopted: bool = False
    ) -> None:
        """Store ``jobs`` as job files now: the batch path, and the journal's spooler.

        ``records``: the jobs' file contents as journaled (else encoded here).
        ``adopted``: from a dead process's journal (see ``_add``).
        """
        for start in range(0, len(jobs), ADD_CHUNK):
            chunk = slice(start, start + ADD_CHUNK)
            try:
                self._add(jobs[chunk], records[chunk], adopted=adopted)
            except OSError as exc:  # a full disk included: never a raw OSError
                raise space.storage_error(exc, self.root, f"adding {len(jobs)} job(s)") from exc

    def _destinations(self, jobs: Sequence[Envelope], now: datetime) -> list[Path]:
        destinations: list[Path] = []
        for env in jobs:
            state = JobState.READY if env.run_at <= now else JobState.SCHEDULED
            try:
                destinations.append(waiting_path(self.folders.queue(env.queue), env, state, now))
            except ValueError as exc:
                raise StorageError(f"job {env.id} cannot be stored: {exc}") from exc
        return destinations

    def _add(self, jobs: Sequence[Envelope], records: Sequence[bytes], *, adopted: bool) -> None:
        now = utcnow()
        single = len(jobs) == 1
        destinations = self._destinations(jobs, now)
        staged: dict[uuid.UUID, Path] = {}  # staged first: each id marker links to its file
        try:
            for i, env in enumerate(jobs):
                if env.id not in staged:  # a second copy within the batch is skipped
                    data = (
                        records[i] if records else encode(StoredJob(envelope=env, updated_at=now))
                    )
                    staged[env.id] = self._writer.stage(data, sync=self.options.fsync and single)
        except BaseException:
            for path in staged.values():
                files.unlink(path)
            raise
        reserved = {env.id for env in self.ids.reserve(jobs, staged)}  # stored already: skipped
        try:
            if adopted:  # from a dead journal: its spooler may have died between marker and file
                reserved.update(
                    env.id
                    for env in jobs
                    if env.id not in reserved
                    and self.folders.locate(str(env.id), env.queue) is None
                )
            moves: dict[uuid.UUID, tuple[Path, Path]] = {}
            for env, destination in zip(jobs, destinations, strict=True):
                if env.id in reserved and env.id not in moves:
                    moves[env.id] = (staged[env.id], destination)
            if not single:
                self._writer.sync_filesystem()  # one flush for the whole batch, not one per file
            folders = set()
            for job_id, (staged_path, destination) in moves.items():
                self.folders.rename_into(staged_path, destination)
                del staged[job_id]
                folders.add(destination.parent)
            for folder in folders:
                self._writer.sync_folder(folder)
        except BaseException:
            # a job renamed in before the error loses its marker (a re-add would copy it)
            self.ids.forget(reserved)
            raise
        finally:
            self.ids.done()
            for path in staged.values():
                files.unlink(path)  # the skipped ones, and any not renamed in (an error)
        for env in jobs:
            self.folders.changed(env.queue)  # let this process see the new jobs at once

    # -- claiming ------------------------------------------------------------------

    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        self.journal.settle()
        paths = self.folders.queue(queue)
        space.check_room(self.root)  # no job may run that could not be recorded
        now = utcnow()
        expires = now + timedelta(seconds=lease)
        expires_ns = int(expires.timestamp() * 1e9)
        restored = self.recovery.restore_orphans(paths, queue)
        claims: list[Claim] = []
        last_scan = self._last_recovery_scan.get(queue, 0.0)
        if restored or time.monotonic() - last_scan >= RECOVERY_SCAN_EVERY:
            claims = self.recovery.recover_expired(paths, limit, expires, expires_ns, owner)
            # a scan cut short by ``limit`` may have left expired leases: look again next time
            self._last_recovery_scan[queue] = time.monotonic() if len(claims) < limit else 0.0
        with self.folders.lock:
            names, listed = self.folders.ready_names(paths, queue, now)
            while len(claims) < limit:
                if not names:
                    if listed:
                        break
                    # the cached names ran out (or were taken by other processes): list once more
                    names, listed = self.folders.ready_names(paths, queue, now, force=True)
                    continue
                name = names.popleft()
                claim = self._claim_ready(paths, name, expires, expires_ns, owner)
                if claim is not None:
                    claims.append(claim)
        return claims

    def _claim_ready(
        self, paths: layout.QueuePaths, name: str, expires: datetime, expires_ns: int, owner: str
    ) -> Claim | None:
        source = paths.ready_s + name
        try:
            data = files.read(source)
        except FileNotFoundError:
            return None  # claimed, cancelled or promoted by someone else since we listed
        except OSError as exc:  # a folder or an unreadable file where a job should be
            self.recovery.fail_corrupt(paths, paths.ready, name, exc)
            return None
        try:
            stored = decode_job_file(decode, data, paths.base.name, name)
        except CorruptJob as exc:
            self.recovery.fail_corrupt(paths, paths.ready, name, exc)
            return None
        token = uuid.uuid4().hex[:16]
        attempts = stored.envelope.attempts + 1
        running = layout.running_name(stored.envelope.id, token, attempts, owner)
        target = paths.running_s + running
        try:
            # mtime (= lease expiry) first: the moment the running name exists it is leased
            os.utime(source, ns=(expires_ns, expires_ns))
            os.rename(source, target)
            # again, now that the file is ours: a process that lost the race may have
            # set its own expiry between our utime and our rename
            os.utime(target, ns=(expires_ns, expires_ns))
        except FileNotFoundError:
            return None  # another worker claimed (or cancelled) it first
        return Claim(
            job=msgspec.structs.replace(stored.envelope, attempts=attempts),
            token=token,
            owner=owner,
            lease_expires_at=expires,
            receipt=running,
        )

    # -- outcomes ------------------------------------------------------------------

    def complete(self, claim: Claim, result: Any = None) -> None:
        if result is None:
            self._writer.sync_folder(self._move_to_succeeded(claim))
            return
        paths, taken = self.folders.fence(claim)
        now = utcnow()
        record = StoredJob(envelope=claim.job, updated_at=now, finished_at=now, result=result)
        self._writer.write(paths.succeeded / layout.finished_name(claim.job.id), encode(record))
        files.unlink(taken)  # gone only if restored as an orphan meanwhile (a stall > grace)

    def _move_to_succeeded(self, claim: Claim) -> Path:
        """Fast path, one rename; returns the folder to sync.

        The file keeps its content from before the claim; readers add this
        attempt and take the finish time from the ctime (see ``JobFolders.record``).
        """
        paths = self.folders.queue(claim.job.queue)
        try:
            os.rename(
                paths.running_s + claim.receipt,
                paths.succeeded_s + layout.finished_name(claim.job.id),
            )
        except FileNotFoundError:
            raise LeaseLost(
                f"job {claim.job.id} is no longer leased by this claim (its lease expired "
                "and another worker claimed it); outcome not recorded"
            ) from None
        return paths.succeeded

    def complete_many(self, done: Sequence[tuple[Claim, Any]]) -> dict[uuid.UUID, StorageError]:
        """Every rename first, then one folder fsync per queue: one sync for the whole batch."""
        errors: dict[uuid.UUID, StorageError] = {}
        renamed: dict[Path, list[uuid.UUID]] = {}
        for claim, result in done:
            try:
                if result is None:
                    renamed.setdefault(self._move_to_succeeded(claim), []).append(claim.job.id)
                else:
                    self.complete(claim, result)
            except StorageError as exc:  # LeaseLost included
                errors[claim.job.id] = exc
            except Exception as exc:  # OSError, or a claim this store cannot route: per job
                errors[claim.job.id] = StorageError(
                    f"recording success of job {claim.job.id} in {self.root} failed: {exc}"
                )
        for folder, ids in renamed.items():
            try:
                self._writer.sync_folder(folder)
            except OSError as exc:
                failure = StorageError(f"making {folder} durable failed: {exc}")
                errors.update((job_id, failure) for job_id in ids)
        return errors

    def retry(self, claim: Claim, run_at: datetime, error: AttemptError) -> None:
        paths, taken = self.folders.fence(claim)
        now = utcnow()
        env = msgspec.structs.replace(claim.job, run_at=run_at, errors=(*claim.job.errors, error))
        destination = waiting_path(paths, env, JobState.RETRYING, now)
        self.folders.put(destination, encode(StoredJob(envelope=env, updated_at=now)))
        files.unlink(taken)  # gone only if restored as an orphan meanwhile (a stall > grace)
        self.folders.changed(claim.job.queue)

    def fail(self, claim: Claim, error: AttemptError) -> None:
        paths, taken = self.folders.fence(claim)
        now = utcnow()
        env = msgspec.structs.replace(claim.job, errors=(*claim.job.errors, error))
        record = StoredJob(envelope=env, updated_at=now, finished_at=now)
        self._writer.write(paths.failed / layout.finished_name(claim.job.id), encode(record))
        files.unlink(taken)  # gone only if restored as an orphan meanwhile (a stall > grace)

    def release(self, claims: Sequence[Claim]) -> None:
        now = utcnow()
        for claim in claims:
            paths = self.folders.queue(claim.job.queue)
            # the file still holds the attempts count from before this claim: nothing to rewrite
            job = claim.job  # claimed, so due: back into ready/ (never a future hour folder)
            name = layout.ready_name(job.priority, min(job.run_at, now), job.id, JobState.READY)
            try:
                os.rename(paths.running / str(claim.receipt), paths.ready / name)
            except FileNotFoundError:
                continue  # stale: the new owner keeps it
            self.folders.changed(claim.job.queue)

    def extend(self, claims: Sequence[Claim], lease: float) -> set[uuid.UUID]:
        expires_ns = time.time_ns() + int(lease * 1e9)
        lost: set[uuid.UUID] = set()
        for claim in claims:
            path = self.folders.queue(claim.job.queue).running_s + claim.receipt
            try:
                os.utime(path, ns=(expires_ns, expires_ns))
            except FileNotFoundError:
                lost.add(claim.job.id)
        return lost

    # -- waiting -------------------------------------------------------------------

    def next_due(self, queue: str) -> datetime | None:
        self.journal.settle()
        paths = self.folders.queue(queue)
        if any(True for _ in files.job_files(paths.ready)):
            return utcnow()
        due: list[datetime] = []
        for bucket in buckets(paths):  # the earliest hour with a job holds the earliest job
            first = min(files.job_files(paths.scheduled / bucket), default=None)
            parsed = layout.parse_waiting(first, "scheduled") if first else None
            if parsed is not None:
                due.append(layout.from_micros(parsed.run_at_us))
                break
        for entry in files.scan(paths.running):
            try:
                due.append(layout.from_micros(entry.stat().st_mtime_ns // 1000))
            except FileNotFoundError:
                continue
        due += self.recovery.orphans_due(paths)
        return min(due, default=None)

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Sleep until new work may be due (a cheap stat of a few folders every 20 ms).

        Watched per queue: ready/, scheduled/ (a new hour folder) and the earliest
        hour folder (a job due before the one the caller sleeps for). A job added
        to a later hour cannot be due earlier, so it need not wake anyone.
        """
        folders: list[Path] = []
        for q in queues:
            paths = self.folders.queue(q)
            folders += [paths.ready, paths.scheduled]
            folders += [paths.scheduled / b for b in buckets(paths)[:1]]
        before = [files.mtime_ns(f) for f in folders]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(min(WAKE_CHECK, max(0.0, deadline - time.monotonic())))
            if [files.mtime_ns(f) for f in folders] != before:
                return

    def spool(self) -> None:
        """Store now, as job files, every job this process has in a journal (reads do this)."""
        self.journal.settle()

    def close(self) -> None:
        self.journal.close()
