"""The filesystem store: one file per job; a rename decides every race between processes.

Claim = rename ``ready/<key>`` to ``running/<id>~<token>~...`` (one process wins,
the others get FileNotFoundError). An outcome first renames the claim's exact
running file into ``finishing/`` (fencing: if another worker re-claimed the job,
that file is gone and the write raises ``LeaseLost``), then writes the final
file and removes the finishing copy. A crash between those steps leaves the job
in ``finishing/`` (shown as running) under a name holding the writer's host and
pid; a claim puts it back into ``running/`` as expired once that pid is gone
(or, for a writer on another host or pid namespace, after ``ORPHAN_TIMEOUT``)
unless its outcome was written. Lease expiry is the running file's mtime, so
finding expired leases reads no file.

Invariant: a job file's ``attempts`` counts the attempts started *before* the
current claim (the running name holds the current count), so a claim never
rewrites the file and a result-less ``complete`` is one rename.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from oddjob_core.clock import utcnow
from oddjob_core.errors import LeaseLost, StorageError
from oddjob_core.model import (
    AttemptError,
    Claim,
    Envelope,
    JobQuery,
    JobRecord,
    JobState,
    Page,
)
from oddjob_core.poison import check_queue_name
from oddjob_core.storage import Capabilities, JobManagement, Storage, check_purge_states

from . import layout, space
from .files import FileWriter
from .ids import IdIndex
from .keyvalue import FilesystemKeyValue
from .options import FilesystemOptions
from .poison import CorruptJob, decode_job_file
from .unique import FilesystemUniqueKeys
from .workers import FileWorkerRegistry

log = logging.getLogger("oddjob.filesystem")
ORPHAN_GRACE = 1.0  # seconds in finishing/ before a dead writer's outcome is put back
ORPHAN_TIMEOUT = 300.0  # ... when the writer's liveness cannot be checked (other host)
ORPHAN_SCAN_EVERY = 1.0
RECOVERY_SCAN_EVERY = 0.25  # seconds between scans of running/ for expired leases, per queue
STALE_TMP = 3600.0  # seconds before an abandoned file in tmp/ is deleted
ADD_CHUNK = 1000  # jobs staged per flush in a batch add
CORRUPT = ".corrupt"  # suffix of an undecodable job's original bytes, beside its failed record
WAKE_CHECK = 0.02  # seconds between checks for new jobs while idle


class StoredJob(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A job file's content (its folder and name say its state)."""

    envelope: Envelope
    updated_at: datetime
    finished_at: datetime | None = None
    result: Any = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(StoredJob).decode


class FilesystemStorage(
    Storage, JobManagement, FilesystemKeyValue, FilesystemUniqueKeys, FileWorkerRegistry
):
    """Jobs as files under one folder; safe for many threads and processes on one host."""

    name = "filesystem"
    capabilities = Capabilities(search_by_argument=True)

    def __init__(self, options: FilesystemOptions | None = None) -> None:
        self.options = options or FilesystemOptions()
        self.root = Path(self.options.path).resolve()
        self.tmp = self.root / "tmp"
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            (self.root / "queues").mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the job folder {self.root}: {exc.strerror}; set "
                "[tool.oddjob.filesystem] path to a writable folder"
            ) from exc
        self._writer = FileWriter(self.tmp, durable=self.options.fsync)
        self._ids = IdIndex(self.root)
        self._kv_init(self.root, self._writer)
        self._unique_init(self.root, self.tmp)
        self._paths: dict[str, layout.QueuePaths] = {}
        self._ready: dict[str, collections.deque[str]] = {}
        self._listed_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._last_orphan_scan: dict[str, float] = {}
        self._last_recovery_scan: dict[str, float] = {}

    # -- paths ---------------------------------------------------------------------

    def _queue(self, queue: str) -> layout.QueuePaths:
        paths = self._paths.get(queue)
        if paths is None:
            check_queue_name(queue)
            if queue.strip(".") == "":  # allowed by the core's rule, but a path trick here
                raise ValueError(f"queue name {queue!r} is invalid: it must not be only dots")
            paths = layout.QueuePaths(self.root, queue)
            paths.create()
            self._paths[queue] = paths
        return paths

    def _queue_names(self, only: str | None = None) -> list[str]:
        if only is not None:
            return [only] if (self.root / "queues" / only).is_dir() else []
        return sorted(p.name for p in (self.root / "queues").iterdir() if p.is_dir())

    @staticmethod
    def _waiting_path(
        paths: layout.QueuePaths, env: Envelope, state: JobState, now: datetime
    ) -> Path:
        if env.run_at <= now:
            return paths.ready / layout.ready_name(env.priority, env.run_at, env.id, state)
        bucket = paths.scheduled / layout.bucket_of(layout.micros(env.run_at))
        return bucket / layout.scheduled_name(env.priority, env.run_at, env.id, state)

    def _rename_into(self, source: Path, destination: Path) -> None:
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
                self._writer.sync_folder(folder.parent)
        os.rename(source, destination)

    def _put(self, destination: Path, data: bytes) -> None:
        """Write a waiting job's file (tmp + fsync + rename + folder fsync)."""
        self._rename_into(self._writer.stage(data), destination)
        self._writer.sync_folder(destination.parent)

    def _waiting_folders(self, paths: layout.QueuePaths) -> list[str]:
        """``ready`` and every ``scheduled/<hour>`` folder, earliest hour first."""
        return ["ready", *(f"scheduled/{b}" for b in _buckets(paths))]

    # -- producing -----------------------------------------------------------------

    def add(self, jobs: Sequence[Envelope]) -> None:
        for start in range(0, len(jobs), ADD_CHUNK):
            try:
                self._add(jobs[start : start + ADD_CHUNK])
            except OSError as exc:  # a full disk included: never a raw OSError
                raise space.storage_error(exc, self.root, f"adding {len(jobs)} job(s)") from exc

    def _add(self, jobs: Sequence[Envelope]) -> None:
        now = utcnow()
        single = len(jobs) == 1
        destinations: list[Path] = []
        for env in jobs:
            state = JobState.READY if env.run_at <= now else JobState.SCHEDULED
            try:
                destinations.append(self._waiting_path(self._queue(env.queue), env, state, now))
            except ValueError as exc:
                raise StorageError(f"job {env.id} cannot be stored: {exc}") from exc
        reserved = {env.id for env in self._ids.reserve(jobs)}  # an id stored already is skipped
        fresh = set(reserved)
        try:
            staged: list[tuple[Path, Path]] = []
            for env, destination in zip(jobs, destinations, strict=True):
                if env.id not in fresh:
                    continue
                fresh.discard(env.id)  # a second copy within the batch is skipped too
                data = _encode(StoredJob(envelope=env, updated_at=now))
                staged.append(
                    (self._writer.stage(data, sync=self.options.fsync and single), destination)
                )
            if not single:
                self._writer.sync_filesystem()  # one flush for the whole batch, not one per file
            folders = set()
            for staged_path, destination in staged:
                self._rename_into(staged_path, destination)
                folders.add(destination.parent)
            for folder in folders:
                self._writer.sync_folder(folder)
        except BaseException:
            # a job renamed in before the error loses its marker (a re-add would copy it)
            self._ids.forget(reserved)
            raise
        for env in jobs:
            self._listed_at[env.queue] = 0.0  # let this process see the new jobs at once

    # -- claiming ------------------------------------------------------------------

    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        paths = self._queue(queue)
        space.check_room(self.root)  # no job may run that could not be recorded
        now = utcnow()
        expires = now + timedelta(seconds=lease)
        expires_ns = int(expires.timestamp() * 1e9)
        restored = self._maybe_restore_orphans(paths, queue)
        claims: list[Claim] = []
        last_scan = self._last_recovery_scan.get(queue, 0.0)
        if restored or time.monotonic() - last_scan >= RECOVERY_SCAN_EVERY:
            claims = self._recover_expired(paths, limit, expires, expires_ns, owner)
            # a scan cut short by ``limit`` may have left expired leases: look again next time
            self._last_recovery_scan[queue] = time.monotonic() if len(claims) < limit else 0.0
        with self._lock:
            names, listed = self._ready_names(paths, queue, now)
            while len(claims) < limit:
                if not names:
                    if listed:
                        break
                    # the cached names ran out (or were taken by other processes): list once more
                    names, listed = self._ready_names(paths, queue, now, force=True)
                    continue
                name = names.popleft()
                claim = self._take_ready(paths, name, expires, expires_ns, owner)
                if claim is not None:
                    claims.append(claim)
        return claims

    def _ready_names(
        self, paths: layout.QueuePaths, queue: str, now: datetime, *, force: bool = False
    ) -> tuple[collections.deque[str], bool]:
        """This process's sorted view of ready/, and whether it was listed just now.

        Listed again when used up or older than ``refresh_interval``; a stale name
        costs one failed open, and a name taken meanwhile fails its rename.
        """
        names = self._ready.get(queue)
        fresh = time.monotonic() - self._listed_at.get(queue, 0.0) < self.options.refresh_interval
        if names and fresh and not force:
            return names, False
        self._promote_due(paths, now)
        names = collections.deque(sorted(_job_files(paths.ready)))
        self._ready[queue] = names
        self._listed_at[queue] = time.monotonic()
        return names, True

    def _promote_due(self, paths: layout.QueuePaths, now: datetime) -> None:
        """Move scheduled jobs that are now due into ready/ (names only; no file is read)."""
        now_us = layout.micros(now)
        for bucket in _buckets(paths):
            if int(bucket) > now_us:
                break  # this hour has not begun: neither it nor any later one holds a due job
            folder = paths.scheduled / bucket
            for name in sorted(_job_files(folder)):
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

    def _take_ready(
        self, paths: layout.QueuePaths, name: str, expires: datetime, expires_ns: int, owner: str
    ) -> Claim | None:
        source = paths.ready_s + name
        try:
            data = _read(source)
        except FileNotFoundError:
            return None  # claimed, cancelled or promoted by someone else since we listed
        except OSError as exc:  # a folder or an unreadable file where a job should be
            self._fail_corrupt(paths, paths.ready, name, exc)
            return None
        try:
            stored = decode_job_file(_decode, data, paths.base.name, name)
        except CorruptJob as exc:
            self._fail_corrupt(paths, paths.ready, name, exc)
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

    def _recover_expired(
        self, paths: layout.QueuePaths, limit: int, expires: datetime, expires_ns: int, owner: str
    ) -> list[Claim]:
        """Re-claim running jobs whose lease (the file's mtime) has passed."""
        claims: list[Claim] = []
        now_ns = time.time_ns()
        for entry in _scan(paths.running):
            if len(claims) >= limit:
                break
            parsed = layout.parse_running(entry.name)
            if parsed is None:
                continue
            try:
                if entry.stat().st_mtime_ns > now_ns:
                    continue
                data = Path(entry.path).read_bytes()
            except FileNotFoundError:
                continue
            try:
                stored = decode_job_file(_decode, data, paths.base.name, entry.name)
            except CorruptJob as exc:
                self._fail_corrupt(paths, paths.running, entry.name, exc)
                continue
            token = uuid.uuid4().hex[:16]
            attempts = parsed.attempts + 1
            target = paths.running / layout.running_name(parsed.job_id, token, attempts, owner)
            try:
                # mtime first: the moment the new name exists it must look leased
                os.utime(entry.path, ns=(expires_ns, expires_ns))
                os.rename(entry.path, target)
            except FileNotFoundError:
                continue  # another process recovered it, or its owner just finished
            # the crashed attempt counts: the file now says so (see the invariant above)
            previous = msgspec.structs.replace(stored.envelope, attempts=parsed.attempts)
            stored = msgspec.structs.replace(stored, envelope=previous, updated_at=utcnow())
            self._writer.write(target, _encode(stored), mtime_ns=expires_ns)
            log.info(
                "job %s: lease of %s expired; claimed again (attempt %d)",
                parsed.job_id,
                parsed.owner,
                attempts,
            )
            claims.append(
                Claim(
                    job=msgspec.structs.replace(stored.envelope, attempts=attempts),
                    token=token,
                    owner=owner,
                    lease_expires_at=expires,
                    recovered=True,
                    receipt=target.name,
                )
            )
        return claims

    def _fail_corrupt(
        self, paths: layout.QueuePaths, folder: Path, name: str, exc: Exception
    ) -> None:
        """Fail an undecodable job file: a readable failed job carrying the decode error.

        The original bytes move to ``failed/<id>.job.corrupt`` (that rename decides
        which process handles it); ``failed/<id>.job`` is a stand-in record whose
        error says what was wrong, so ``jobs list/show`` and counts see the job.
        """
        try:
            job_id = uuid.UUID(layout.job_id_of(name))
        except ValueError:  # not even the name is ours: a stable id from the name
            job_id = uuid.uuid5(uuid.NAMESPACE_URL, str(folder / name))
        final = paths.failed / layout.finished_name(job_id)
        kept = final.with_name(final.name + CORRUPT)
        try:
            os.rename(folder / name, kept)
        except FileNotFoundError:
            return  # another worker got to it first
        now = utcnow()
        message = (
            f"corrupt job file {folder / name}: {exc}; its bytes are kept in {kept} "
            "(fix them and move the file back, or purge the job)"
        )
        envelope = Envelope(
            id=job_id,
            queue=paths.base.name,
            target=f"<corrupt job file {name}>",
            arguments={},
            run_at=now,
            created_at=now,
            errors=(
                AttemptError(
                    attempt=0, type=_qualname(type(exc.__cause__ or exc)), message=message, at=now
                ),
            ),
        )
        record = StoredJob(envelope=envelope, updated_at=now, finished_at=now)
        self._writer.write(final, _encode(record))
        log.error("job %s failed: %s", job_id, message)

    # -- outcomes ------------------------------------------------------------------

    def _take(self, claim: Claim) -> tuple[layout.QueuePaths, Path]:
        """Move the claim's running file into finishing/: proof this claim still owns the job."""
        paths = self._queue(claim.job.queue)
        taken = paths.finishing / layout.finishing_name(str(claim.receipt))
        try:
            os.rename(paths.running / str(claim.receipt), taken)
        except FileNotFoundError:
            raise LeaseLost(
                f"job {claim.job.id} is no longer leased by this claim (its lease expired and "
                "another worker claimed it, or it was cancelled); outcome not recorded"
            ) from None
        return paths, taken

    def complete(self, claim: Claim, result: Any = None) -> None:
        if result is None:
            self._writer.sync_folder(self._move_to_succeeded(claim))
            return
        paths, taken = self._take(claim)
        now = utcnow()
        record = StoredJob(envelope=claim.job, updated_at=now, finished_at=now, result=result)
        self._writer.write(paths.succeeded / layout.finished_name(claim.job.id), _encode(record))
        _unlink(taken)  # gone only if restored as an orphan meanwhile (a stall > grace)

    def _move_to_succeeded(self, claim: Claim) -> Path:
        """Fast path, one rename; returns the folder to sync.

        The file keeps its content from before the claim; readers add this
        attempt and take the finish time from the ctime (see ``_record``).
        """
        paths = self._queue(claim.job.queue)
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
        paths, taken = self._take(claim)
        now = utcnow()
        env = msgspec.structs.replace(claim.job, run_at=run_at, errors=(*claim.job.errors, error))
        destination = self._waiting_path(paths, env, JobState.RETRYING, now)
        self._put(destination, _encode(StoredJob(envelope=env, updated_at=now)))
        _unlink(taken)  # gone only if restored as an orphan meanwhile (a stall > grace)
        self._listed_at[claim.job.queue] = 0.0

    def fail(self, claim: Claim, error: AttemptError) -> None:
        paths, taken = self._take(claim)
        now = utcnow()
        env = msgspec.structs.replace(claim.job, errors=(*claim.job.errors, error))
        record = StoredJob(envelope=env, updated_at=now, finished_at=now)
        self._writer.write(paths.failed / layout.finished_name(claim.job.id), _encode(record))
        _unlink(taken)  # gone only if restored as an orphan meanwhile (a stall > grace)

    def release(self, claims: Sequence[Claim]) -> None:
        now = utcnow()
        for claim in claims:
            paths = self._queue(claim.job.queue)
            # the file still holds the attempts count from before this claim: nothing to rewrite
            job = claim.job  # claimed, so due: back into ready/ (never a future hour folder)
            name = layout.ready_name(job.priority, min(job.run_at, now), job.id, JobState.READY)
            destination = paths.ready / name
            try:
                os.rename(paths.running / str(claim.receipt), destination)
            except FileNotFoundError:
                continue  # stale: the new owner keeps it
            self._listed_at[claim.job.queue] = 0.0

    def extend(self, claims: Sequence[Claim], lease: float) -> set[uuid.UUID]:
        expires_ns = time.time_ns() + int(lease * 1e9)
        lost: set[uuid.UUID] = set()
        for claim in claims:
            path = self._queue(claim.job.queue).running_s + claim.receipt
            try:
                os.utime(path, ns=(expires_ns, expires_ns))
            except FileNotFoundError:
                lost.add(claim.job.id)
        return lost

    def _maybe_restore_orphans(self, paths: layout.QueuePaths, queue: str) -> bool:
        """Put back outcomes a crashed worker left half-recorded in finishing/ (rare).

        Returns whether a job was put back into running/ (as an expired lease).
        """
        if time.monotonic() - self._last_orphan_scan.get(queue, 0.0) < ORPHAN_SCAN_EVERY:
            return False
        self._last_orphan_scan[queue] = time.monotonic()
        restored = False
        now_ns = time.time_ns()
        for entry in _scan(paths.finishing):
            parsed = layout.parse_finishing(entry.name)
            try:
                age = (now_ns - entry.stat().st_ctime_ns) / 1e9
            except FileNotFoundError:
                continue
            if parsed is None or not _writer_gone(parsed, age):
                continue  # an outcome being written right now (or a stray file)
            job_id = layout.job_id_of(parsed.running)
            if self._has_newer_copy(paths, job_id):
                _unlink(Path(entry.path))  # the outcome was written; only cleanup was missed
                continue
            try:
                os.utime(entry.path, ns=(now_ns, now_ns))  # an expired lease: recovered next
                os.rename(entry.path, paths.running / parsed.running)
            except FileNotFoundError:
                continue
            restored = True
            log.warning(
                "job %s: its worker (pid %d) died while recording the outcome; it will run again",
                job_id,
                parsed.pid,
            )
        limit_ns = now_ns - int(STALE_TMP * 1e9)
        for entry in _scan(self.tmp):  # writes that never got renamed into place
            try:
                if entry.stat().st_mtime_ns < limit_ns:
                    _unlink(Path(entry.path))
            except FileNotFoundError:
                continue
        return restored

    def _has_newer_copy(self, paths: layout.QueuePaths, job_id: str) -> bool:
        """True if the job exists outside finishing/: the orphan's outcome was written."""
        try:
            final = layout.finished_name(uuid.UUID(job_id))
        except ValueError:
            return False
        if any((paths.folder(f) / final).exists() for f in layout.FINISHED_DIRS):
            return True
        return any(
            layout.job_id_of(n) == job_id
            for folder in (*self._waiting_folders(paths), "running")
            for n in _job_files(paths.folder(folder))
        )

    # -- scheduling info -------------------------------------------------------------

    def next_due(self, queue: str) -> datetime | None:
        paths = self._queue(queue)
        if any(True for _ in _job_files(paths.ready)):
            return utcnow()
        due: list[datetime] = []
        for bucket in _buckets(paths):  # the earliest hour with a job holds the earliest job
            first = min(_job_files(paths.scheduled / bucket), default=None)
            parsed = layout.parse_waiting(first, "scheduled") if first else None
            if parsed is not None:
                due.append(layout.from_micros(parsed.run_at_us))
                break
        for entry in _scan(paths.running):
            try:
                due.append(layout.from_micros(entry.stat().st_mtime_ns // 1000))
            except FileNotFoundError:
                continue
        for entry in _scan(paths.finishing):
            writer = layout.parse_finishing(entry.name)
            wait = ORPHAN_GRACE if writer and writer.host == layout.HOST else ORPHAN_TIMEOUT
            try:
                stuck_until = entry.stat().st_ctime_ns // 1000 + int(wait * 1e6)
            except FileNotFoundError:
                continue
            due.append(layout.from_micros(stuck_until + int(ORPHAN_SCAN_EVERY * 1e6)))
        return min(due, default=None)

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Sleep until new work may be due (a cheap stat of a few folders every 20 ms).

        Watched per queue: ready/, scheduled/ (a new hour folder) and the earliest
        hour folder (a job due before the one the caller sleeps for). A job added
        to a later hour cannot be due earlier, so it need not wake anyone.
        """
        folders: list[Path] = []
        for q in queues:
            paths = self._queue(q)
            folders += [paths.ready, paths.scheduled]
            folders += [paths.scheduled / b for b in _buckets(paths)[:1]]
        before = [_mtime(f) for f in folders]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(min(WAKE_CHECK, max(0.0, deadline - time.monotonic())))
            if [_mtime(f) for f in folders] != before:
                return

    # -- management ------------------------------------------------------------------

    def _locate(self, job_id: str, queue: str | None = None) -> tuple[str, str, str] | None:
        """(queue, folder, file name) of a job, looking in every folder of every queue."""
        for q in self._queue_names(queue):
            paths = self._queue(q)
            for folder in layout.FINISHED_DIRS:
                name = layout.finished_name(uuid.UUID(job_id))
                if (paths.folder(folder) / name).exists():
                    return q, folder, name
            for folder in ("running", "finishing", *self._waiting_folders(paths)):
                for name in _job_files(paths.folder(folder)):
                    if layout.job_id_of(name) == job_id:
                        return q, folder, name
        return None

    def _record(self, queue: str, folder: str, name: str) -> JobRecord | None:
        path = self._queue(queue).folder(folder) / name
        try:
            stat = path.stat()
            stored = _decode(path.read_bytes())
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

    def get(self, job_id: uuid.UUID) -> JobRecord | None:
        found = self._locate(str(job_id))
        return self._record(*found) if found else None

    def _records(self, queue: str | None) -> Iterator[JobRecord]:
        for q in self._queue_names(queue):
            paths = self._queue(q)
            folders = [f for f in layout.ALL_DIRS if f not in layout.WAITING_DIRS]
            for folder in [*self._waiting_folders(paths), *folders]:
                for name in _job_files(paths.folder(folder)):
                    record = self._record(q, folder, name)
                    if record is not None:
                        yield record

    def search(self, query: JobQuery) -> Page:
        matches = [r for r in self._records(query.queue) if _matches(r, query)]
        matches.sort(key=lambda r: r.envelope.id, reverse=True)
        return Page(
            jobs=matches[query.offset : query.offset + query.limit],
            total=len(matches),
            offset=query.offset,
            limit=query.limit,
        )

    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        out: dict[str, dict[JobState, int]] = {}
        for q in self._queue_names(queue):
            paths = self._queue(q)
            per: dict[JobState, int] = {}
            for folder in self._waiting_folders(paths):
                for name in _job_files(paths.folder(folder)):
                    parsed = layout.parse_waiting(name, folder)
                    if parsed is not None:
                        per[parsed.state] = per.get(parsed.state, 0) + 1
            running = sum(1 for _ in _job_files(paths.running))
            running += sum(1 for _ in _job_files(paths.finishing))
            if running:
                per[JobState.RUNNING] = running
            for folder, state in layout.FINISHED_DIRS.items():
                n = sum(1 for _ in _job_files(paths.folder(folder)))
                if n:
                    per[state] = n
            out[q] = per
        return out

    def cancel(self, job_id: uuid.UUID) -> bool:
        for _ in range(3):  # a scheduled job may be promoted to ready/ while we look
            found = self._locate(str(job_id))
            if found is None or not layout.is_waiting(found[1]):
                return False
            queue, folder, name = found
            paths = self._queue(queue)
            target = paths.cancelled / layout.finished_name(job_id)
            try:
                os.rename(paths.folder(folder) / name, target)
            except FileNotFoundError:
                continue  # claimed or promoted in the meantime: look again
            self._rewrite_finished(target)
            return True
        return False

    def _rewrite_finished(self, path: Path) -> None:
        stored = _decode(path.read_bytes())
        now = utcnow()
        self._writer.write(
            path, _encode(msgspec.structs.replace(stored, updated_at=now, finished_at=now))
        )

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        found = self._locate(str(job_id))
        if found is None or found[1] not in layout.FINISHED_DIRS:
            return False
        queue, folder, name = found
        paths = self._queue(queue)
        # parked under a running-style name: if we crash before the rewrite, orphan
        # recovery runs the job anyway, which is what the requeue asked for
        taken = paths.finishing / layout.finishing_name(
            layout.running_name(job_id, "requeue", 0, "requeue")
        )
        try:
            os.rename(paths.folder(folder) / name, taken)
        except FileNotFoundError:
            return False
        stored = _decode(taken.read_bytes())
        now = utcnow()
        when = run_at or now
        env = msgspec.structs.replace(stored.envelope, run_at=when, attempts=0)
        state = JobState.READY if when <= now else JobState.SCHEDULED
        self._put(
            self._waiting_path(paths, env, state, now),
            _encode(StoredJob(envelope=env, updated_at=now)),
        )
        _unlink(taken)  # gone only if restored as an orphan meanwhile (a stall > grace)
        self._listed_at[queue] = 0.0
        return True

    def purge(
        self,
        states: Iterable[JobState],
        older_than: datetime | None = None,
        queue: str | None = None,
    ) -> int:
        chosen = check_purge_states(states)
        cutoff_ns = int(older_than.timestamp() * 1e9) if older_than is not None else None
        removed = 0
        folders = [f for f, s in layout.FINISHED_DIRS.items() if s in chosen]
        for q in self._queue_names(queue):
            paths = self._queue(q)
            for folder in folders:
                for entry in _scan(paths.folder(folder)):
                    if not entry.name.endswith(layout.SUFFIX):
                        continue  # a .corrupt sidecar goes with its job below
                    try:
                        if cutoff_ns is not None and entry.stat().st_ctime_ns >= cutoff_ns:
                            continue
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        continue
                    self._ids.forget([entry.name.removesuffix(layout.SUFFIX)])
                    _remove_sidecar(entry.path + CORRUPT)
                    removed += 1
        return removed


def _buckets(paths: layout.QueuePaths) -> list[str]:
    """The scheduled/<hour> folder names of a queue, earliest first."""
    return sorted(e.name for e in _scan(paths.scheduled) if e.name.isdigit() and e.is_dir())


def _remove_sidecar(path: str) -> None:
    """Delete a corrupt job's original bytes (a folder, if a folder sat where a job should)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(path, ignore_errors=True)


def _read(path: str) -> bytes:
    """A whole (small) file, with fewer layers than ``Path.read_bytes``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _scan(folder: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            yield from entries
    except FileNotFoundError:
        return


def _job_files(folder: Path) -> Iterator[str]:
    for entry in _scan(folder):
        if entry.name.endswith(layout.SUFFIX):
            yield entry.name


def _writer_gone(finishing: layout.FinishingName, age: float) -> bool:
    """Whether the process that moved a file into finishing/ can no longer finish it."""
    if age >= ORPHAN_TIMEOUT:
        return True
    if age < ORPHAN_GRACE or finishing.host != layout.HOST:
        return False  # another machine or container: its pids are not ours to check
    if finishing.boot != layout.BOOT:
        return True  # written before this host rebooted
    try:
        os.kill(finishing.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _mtime(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _matches(record: JobRecord, query: JobQuery) -> bool:
    env = record.envelope
    if query.states is not None and record.state not in query.states:
        return False
    if query.target is not None and env.target != query.target:
        return False
    if query.created_after is not None and env.created_at < query.created_after:
        return False
    if query.created_before is not None and env.created_at >= query.created_before:
        return False
    if query.arguments:
        return all(k in env.arguments and env.arguments[k] == v for k, v in query.arguments.items())
    return True
