"""Recovery: expired leases claimed again, orphaned outcomes put back, stale temp files and corrupt jobs.

A crash between an outcome's first rename (into finishing/) and its final
write leaves the job in finishing/ under a name holding the writer's host and
pid; ``restore_orphans`` puts it back into running/ as an expired lease once
that pid is gone (or, for a writer on another host or pid namespace, after
``ORPHAN_TIMEOUT``) unless its outcome was written. Lease expiry is the running
file's mtime, so finding expired leases reads no file.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import datetime
from pathlib import Path

import msgspec

from oddjob_core.clock import utcnow
from oddjob_core.model import AttemptError, Claim, Envelope

from . import files, layout
from .folders import CORRUPT, JobFolders, StoredJob, decode, encode, waiting_folders
from .poison import CorruptJob, decode_job_file

log = logging.getLogger("oddjob.filesystem")

ORPHAN_GRACE = 1.0  # seconds in finishing/ before a dead writer's outcome is put back
ORPHAN_TIMEOUT = 300.0  # ... when the writer's liveness cannot be checked (other host)
ORPHAN_SCAN_EVERY = 1.0
STALE_TMP = 3600.0  # seconds before an abandoned file in tmp/ is deleted


class Recovery:
    """Finds and repairs what crashed workers and producers left behind, for one store."""

    def __init__(self, folders: JobFolders, tmp: Path) -> None:
        self.folders = folders
        self.tmp = tmp
        self._last_orphan_scan: dict[str, float] = {}

    def recover_expired(
        self, paths: layout.QueuePaths, limit: int, expires: datetime, expires_ns: int, owner: str
    ) -> list[Claim]:
        """Re-claim running jobs whose lease (the file's mtime) has passed."""
        claims: list[Claim] = []
        now_ns = time.time_ns()
        for entry in files.scan(paths.running):
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
                stored = decode_job_file(decode, data, paths.base.name, entry.name)
            except CorruptJob as exc:
                self.fail_corrupt(paths, paths.running, entry.name, exc)
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
            # the crashed attempt counts: the file now says so (see the folders invariant)
            previous = msgspec.structs.replace(stored.envelope, attempts=parsed.attempts)
            stored = msgspec.structs.replace(stored, envelope=previous, updated_at=utcnow())
            self.folders.writer.write(target, encode(stored), mtime_ns=expires_ns)
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

    def fail_corrupt(
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
        kind = type(exc.__cause__ or exc)
        envelope = Envelope(
            id=job_id,
            queue=paths.base.name,
            target=f"<corrupt job file {name}>",
            arguments={},
            run_at=now,
            created_at=now,
            errors=(
                AttemptError(
                    attempt=0,
                    type=f"{kind.__module__}.{kind.__qualname__}",
                    message=message,
                    at=now,
                ),
            ),
        )
        record = StoredJob(envelope=envelope, updated_at=now, finished_at=now)
        self.folders.writer.write(final, encode(record))
        log.error("job %s failed: %s", job_id, message)

    def restore_orphans(self, paths: layout.QueuePaths, queue: str) -> bool:
        """Put back outcomes a crashed worker left half-recorded in finishing/ (rare).

        Returns whether a job was put back into running/ (as an expired lease).
        Also deletes writes that never got renamed into place (tmp/).
        """
        if time.monotonic() - self._last_orphan_scan.get(queue, 0.0) < ORPHAN_SCAN_EVERY:
            return False
        self._last_orphan_scan[queue] = time.monotonic()
        restored = False
        now_ns = time.time_ns()
        for entry in files.scan(paths.finishing):
            parsed = layout.parse_finishing(entry.name)
            try:
                age = (now_ns - entry.stat().st_ctime_ns) / 1e9
            except FileNotFoundError:
                continue
            if parsed is None or not writer_gone(parsed, age):
                continue  # an outcome being written right now (or a stray file)
            job_id = layout.job_id_of(parsed.running)
            if self._has_newer_copy(paths, job_id):
                files.unlink(Path(entry.path))  # the outcome was written; only cleanup was missed
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
        for entry in files.scan(self.tmp):
            try:
                if entry.stat().st_mtime_ns < limit_ns:
                    files.unlink(Path(entry.path))
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
            for folder in (*waiting_folders(paths), "running")
            for n in files.job_files(paths.folder(folder))
        )

    @staticmethod
    def orphans_due(paths: layout.QueuePaths) -> list[datetime]:
        """When each outcome stuck in finishing/ may be put back (for ``next_due``)."""
        due = []
        for entry in files.scan(paths.finishing):
            writer = layout.parse_finishing(entry.name)
            wait = ORPHAN_GRACE if writer and writer.host == layout.HOST else ORPHAN_TIMEOUT
            try:
                stuck_until = entry.stat().st_ctime_ns // 1000 + int(wait * 1e6)
            except FileNotFoundError:
                continue
            due.append(layout.from_micros(stuck_until + int(ORPHAN_SCAN_EVERY * 1e6)))
        return due


def writer_gone(finishing: layout.FinishingName, age: float, grace: float | None = None) -> bool:
    """Whether the process that moved a file into finishing/ can no longer finish it.

    Also asked of a journal's writer (``journal``), with no grace: only its
    owner writes under its name, so a dead pid is a dead owner at once.
    """
    if age >= ORPHAN_TIMEOUT:
        return True
    if age < (ORPHAN_GRACE if grace is None else grace) or finishing.host != layout.HOST:
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
