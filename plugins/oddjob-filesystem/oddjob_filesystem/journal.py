"""The enqueue journal: one overwrite, flushed as it is written, makes a small add durable.

Creating files is what a filesystem add pays for: an inode for the id marker
and one for the job file (0.3-1 ms each on a busy ext4), then flushes that
commit the file system's own journal. So an add of a few jobs is written into
this process's journal instead, a file made once and filled with zeros ahead
of use: the write changes no metadata, and its flush (``RWF_DSYNC``: one system
call; elsewhere ``pwrite`` + ``fdatasync``) is data only (SQLite's write-ahead log
works the same way). A background thread, the
spooler, then stores the journaled jobs as ordinary job files with the batch
path (markers, files, one ``syncfs``, renames, folder flushes) and records in
the journal's header how far it got. A fully spooled journal is reused (a new
salt makes its old records invalid) once idle or big, and deleted at close.

    journal/<host>@<boot>@<pid>@<random>.log
    header:  b"OJJ2" + u32 salt + u64 offset (the records before it are stored as files)
    record:  u32 length + u32 crc32 of the payload, seeded with the salt + payload (a
             StoredJob as JSON); little-endian; zeros after the last record

The spooler waits until the producer pauses (``SPOOL_IDLE``) or the oldest
journaled job is ``SPOOL_DELAY`` old, so a burst of adds is not slowed by file
creation (and the batch path's ``syncfs``, which stalls appends) and a paused
producer's jobs are files within milliseconds. The price: under a stream of
adds with no 2 ms gap, other processes see a job up to ``SPOOL_DELAY`` late. Reads in
this process (claim, get, search, counts, ...) spool first: a process reads its
own writes. Other processes see a job once it is spooled. A journal whose
process died (SIGKILL, power cut; same rule as an outcome in finishing/) is
adopted by the next process that reads the store: renamed to a name of that
process (exactly one adopts it), its records from the header's offset on
stored (a job whose id is stored already is skipped unless it is nowhere to
be found), and deleted. A torn last record (a crash inside an append)
belonged to an add that never returned, and is dropped.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import struct
import threading
import time
import uuid
import weakref
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from oddjob_core.clock import utcnow
from oddjob_core.model import Envelope

from . import files, layout
from .files import FileWriter
from .folders import StoredJob, decode, encode
from .recovery import writer_gone

log = logging.getLogger("oddjob.filesystem")

MAGIC = b"OJJ2"
HEADER = 16
FRAME = struct.Struct("<II")  # length, crc32
SALT_DONE = struct.Struct("<IQ")  # after MAGIC
DONE = struct.Struct("<Q")  # after MAGIC and the salt
DONE_AT = len(MAGIC) + 4
SUFFIX = ".log"
MAX_JOBS = 64  # an add of up to this many jobs goes through the journal
ZEROED = 256 << 10  # bytes of zeros written ahead of the records, at a time
REUSE_SIZE = 4 << 20  # a fully spooled journal this big is reused at once
SPOOL_IDLE = 0.002  # seconds without an add before the spooler starts
SPOOL_DELAY = 1.0  # ... or once the oldest journaled job is this old
SPOOL_BATCH = 1000  # jobs the spooler stores per batch
REUSE_IDLE = 1.0  # seconds without an add before a fully spooled journal is reused
SETTLE_TIMEOUT = 10.0  # longest a read waits for the spooler (a full disk stalls it)

Store = Callable[[Sequence[Envelope], Sequence[bytes]], None]  # jobs, their files' contents

_DSYNC: int | None = getattr(os, "RWF_DSYNC", None)  # Linux 4.7+; elsewhere pwrite + fdatasync


def _no_dsync() -> None:
    global _DSYNC
    _DSYNC = None


_live: weakref.WeakSet[Journal] = weakref.WeakSet()  # open journals of this process
_adopting = threading.Lock()


class Journal:
    """One process's journal of a store, its spooler thread, and adoption of dead journals."""

    def __init__(self, root: Path, writer: FileWriter, store: Store, restore: Store) -> None:
        self.folder = root / "journal"
        self._writer = writer
        self._store = store  # the batch path (skips ids stored already)
        self._restore = restore  # the same, for adopted jobs (also re-stores lost ones)
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._pid = os.getpid()
        self._fd: int | None = None
        self.path: Path | None = None
        self._salt = self._size = 0
        self._end = self._done = HEADER
        # journaled, not yet files: the job, its record (the file's content), the record's end
        self._pending: list[tuple[Envelope, bytes, int]] = []
        self._first = self._last = 0.0  # monotonic time of the oldest pending / latest add
        self._urgent = False  # a reader waits: spool now
        self._failed = 0  # spools that failed (a full disk): a reader waits for one attempt
        self._thread: threading.Thread | None = None
        self._closing = False

    # -- producing -----------------------------------------------------------------

    def append(self, jobs: Sequence[Envelope]) -> bool:
        """Store ``jobs`` durably in the journal; False once closed (use the direct path)."""
        now = utcnow()
        records = [encode(StoredJob(envelope=env, updated_at=now)) for env in jobs]
        with self._cond:
            if self._closing or self._pid != os.getpid():
                return False
            if self._fd is None:
                self._open()
            assert self._fd is not None
            data = b"".join(FRAME.pack(len(r), zlib.crc32(r, self._salt)) + r for r in records)
            if self._end + len(data) > self._size:  # zeros ahead: later adds change no metadata
                grow = max(ZEROED, len(data))
                self._write(bytes(grow), self._size)
                self._size += grow
            # an append that failed left its bytes past _end: this one overwrites them
            self._write(data, self._end, durable=self._writer.durable)
            self._last = time.monotonic()
            idle = not self._pending  # else the spooler is on a timer already: no wake-up
            if idle:
                self._first = self._last
            for env, record in zip(jobs, records, strict=True):
                self._end += FRAME.size + len(record)
                self._pending.append((env, record, self._end))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._spool, name="oddjob-filesystem-journal", daemon=True
                )
                self._thread.start()
            elif idle:
                self._cond.notify_all()
        return True

    def _write(self, data: bytes, offset: int, *, durable: bool = False) -> None:
        """Write ``data`` at ``offset``; ``durable``: on disk when this returns (one syscall).

        ``RWF_DSYNC`` is ``pwrite`` + ``fdatasync`` of that range in one system call:
        one fewer switch of threads (and of the GIL) per add than the two calls.
        """
        assert self._fd is not None
        if durable and _DSYNC is not None:
            try:
                written = os.pwritev(self._fd, [data], offset, _DSYNC)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                _no_dsync()  # a kernel or file system without it: the two calls
                written = os.pwrite(self._fd, data, offset)
                os.fdatasync(self._fd)
        else:
            written = os.pwrite(self._fd, data, offset)
            if durable:
                os.fdatasync(self._fd)
        if written != len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    def _open(self) -> None:
        if not self.folder.is_dir():
            self.folder.mkdir(exist_ok=True)
            self._writer.sync_folder(self.folder.parent)
        path = self.folder / _own_name()
        self._fd, self.path = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), path
        try:
            self._size = ZEROED
            self._write(bytes(ZEROED), 0)
            self._start_over()
            self._writer.sync_folder(self.folder)
        except BaseException:
            os.close(self._fd)
            self._fd = None
            files.unlink(path)
            raise

    def _start_over(self) -> None:
        """A new salt: every record in the file is void; the next one goes after the header."""
        self._salt = int.from_bytes(os.urandom(4), "little")
        self._end = self._done = HEADER
        self._write(MAGIC + SALT_DONE.pack(self._salt, HEADER), 0)
        if self._writer.durable:
            os.fdatasync(self._fd)  # type: ignore[arg-type]

    # -- spooling ------------------------------------------------------------------

    def _spool(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                while not self._due():
                    if self._closing and not self._pending:
                        return
                    self._cond.wait(self._wait_time())
                batch = self._pending[:SPOOL_BATCH]
            try:
                self._store([job[0] for job in batch], [job[1] for job in batch])
            except Exception as exc:  # a full disk, say: the jobs wait in the journal
                if not self.folder.is_dir():  # the store was deleted: nothing left to keep
                    log.warning("journal %s vanished: %d job(s) dropped", self.path, len(batch))
                    with self._cond:
                        self._pending.clear()
                        self._cond.notify_all()
                    continue
                backoff = min(5.0, backoff * 2 or 0.05)
                log.warning("storing %d journaled job(s) failed (%s); retrying", len(batch), exc)
                with self._cond:
                    self._failed += 1  # a reader waits for one attempt, not for success
                    self._urgent = False
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: self._urgent, backoff)  # a reader: try again now
                continue
            backoff = 0.0
            with self._cond:
                del self._pending[: len(batch)]
                self._done = batch[-1][2]
                self._first = time.monotonic()  # the rest waited for this batch, not for adds
                if not self._pending:
                    self._urgent = False
                try:
                    self._write(DONE.pack(self._done), DONE_AT)
                except OSError:
                    pass  # a hint only: adoption skips ids stored already
                self._cond.notify_all()

    def _due(self) -> bool:
        """Whether to spool now (else reuse the journal if that is due)."""
        if not self._pending:
            self._reuse_if_due()
            return False
        now = time.monotonic()
        return (
            self._urgent
            or self._closing
            or now - self._last >= SPOOL_IDLE
            or now - self._first >= SPOOL_DELAY
        )

    def _wait_time(self) -> float | None:
        if self._pending:
            due = min(self._last + SPOOL_IDLE, self._first + SPOOL_DELAY)
            return max(0.0005, due - time.monotonic())
        return REUSE_IDLE if self._fd is not None and self._end > HEADER else None

    def _reuse_if_due(self) -> None:
        """Start a fully spooled journal over once it is idle or big (closing: delete it)."""
        if self._fd is None or self._pending or (self._end == HEADER and not self._closing):
            return
        if self._closing:
            os.close(self._fd)
            self._fd = None
            if self.path is not None:
                files.unlink(self.path)
                self._writer.sync_folder(self.folder)
        elif time.monotonic() - self._last >= REUSE_IDLE or self._end >= REUSE_SIZE:
            try:
                self._start_over()
            except OSError as exc:  # appends carry on after the old records
                log.warning("reusing journal %s failed: %s", self.path, exc)

    def wait_spooled(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Spool now; return once every job appended so far is a file (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._pending:
                self._urgent = True
                self._cond.notify_all()
            failed = self._failed
            while self._pending and self._failed == failed and self._pid == os.getpid():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def close(self) -> None:
        """Spool what is left, delete the journal, stop the spooler; later adds go direct."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread if self._pid == os.getpid() else None
        if thread is not None:
            thread.join(SETTLE_TIMEOUT)
        with self._cond:
            if self._pid == os.getpid():
                self._reuse_if_due()  # with jobs left (a full disk) it stays, adopted later
        _live.discard(self)

    # -- reading: own journals spooled, dead ones adopted ----------------------------

    def settle(self) -> None:
        """Before a read: this process's jobs are files, and dead processes' journals adopted."""
        for journal in list(_live):
            if journal.folder == self.folder:
                journal.wait_spooled()
        if not self.folder.is_dir():
            return
        with _adopting:
            for entry in files.scan(self.folder):
                if entry.name.endswith(SUFFIX) and _owner_gone(entry):
                    self._adopt(entry.path)

    def _adopt(self, path: str) -> None:
        mine = self.folder / _own_name()
        try:
            os.rename(path, mine)  # exactly one process adopts it
        except FileNotFoundError:
            return
        jobs, records, torn = read_journal(files.read(str(mine)))
        if torn:
            log.info("journal %s: stopped at an invalid record (a torn append, or reused)", path)
        try:
            for start in range(0, len(jobs), SPOOL_BATCH):
                chunk = slice(start, start + SPOOL_BATCH)
                self._restore(jobs[chunk], records[chunk])
        except Exception as exc:
            log.warning("adopting journal %s failed (%s); trying again later", path, exc)
            return  # it keeps this process's name: the next settle here tries again
        files.unlink(mine)
        self._writer.sync_folder(self.folder)


def _own_name() -> str:
    return f"{layout.HOST}@{layout.BOOT}@{os.getpid()}@{uuid.uuid4().hex[:12]}{SUFFIX}"


def _owner_gone(entry: os.DirEntry[str]) -> bool:
    """Whether the process that wrote journal ``entry`` can no longer spool it."""
    owner = layout.parse_finishing(entry.name)
    if owner is None:
        return False  # not a journal name: left alone
    if owner.pid == os.getpid() and owner.host == layout.HOST and owner.boot == layout.BOOT:
        # ours: an open journal is spooled by its thread; anything else was left to us
        return not any(j.path is not None and j.path.name == entry.name for j in list(_live))
    try:
        age = time.time() - entry.stat().st_mtime
    except FileNotFoundError:
        return False
    return writer_gone(owner, age, grace=0.0)


def read_journal(data: bytes) -> tuple[list[Envelope], list[bytes], bool]:
    """The jobs (and records) from the header's offset on; True if an invalid record ended them.

    An invalid record is one torn by a crash inside an append (its add never
    returned) or one of the journal's use before its latest new salt.
    """
    if len(data) < HEADER or data[: len(MAGIC)] != MAGIC:
        return [], [], False  # died before its first append, or not a journal: nothing added
    salt, done = SALT_DONE.unpack_from(data, len(MAGIC))
    start = done if HEADER <= done <= len(data) else HEADER
    jobs, records, end = _records(data, start, salt)
    if end == start != HEADER and _something_at(data, start):
        jobs, records, end = _records(data, HEADER, salt)  # the offset is mid-record: read all
    return jobs, records, _something_at(data, end)


def _something_at(data: bytes, pos: int) -> bool:
    return pos + FRAME.size <= len(data) and FRAME.unpack_from(data, pos)[0] != 0


def _records(data: bytes, pos: int, salt: int) -> tuple[list[Envelope], list[bytes], int]:
    jobs: list[Envelope] = []
    records: list[bytes] = []
    while pos + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, pos)
        payload = data[pos + FRAME.size : pos + FRAME.size + length]
        if length == 0 or len(payload) != length or zlib.crc32(payload, salt) != crc:
            break  # the zeros after the last record, or one torn by a crash inside an append
        pos += FRAME.size + length
        try:
            jobs.append(decode(payload).envelope)
        except Exception as exc:  # whole but unreadable (nested past the recursion limit?)
            log.error("journal record before byte %d cannot be decoded, skipped: %s", pos, exc)
            continue
        records.append(payload)
    return jobs, records, pos


@atexit.register
def _close_all() -> None:
    """A process that exits normally stores its journaled jobs as files first."""
    for journal in list(_live):
        journal.close()


def _after_fork() -> None:
    for journal in list(_live):  # the parent's journal, lock and spooler are not the child's
        if journal._fd is not None:
            os.close(journal._fd)  # the child's copy only
        journal._reset()


os.register_at_fork(after_in_child=_after_fork)
