"""File primitives: atomic, optionally durable writes (tmp/, fsync, rename, folder fsync) and reads.

The readers never raise for a folder or file that vanished meanwhile: other
processes rename job files all the time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from . import layout


class FileWriter:
    """Writes whole files atomically; ``durable`` adds the fsyncs a power cut needs.

    Folder fsyncs are group-committed: a thread that needs ``folder`` flushed
    after its rename waits for a flush that *started* after that rename, and
    one thread's fsync serves every thread that queued behind it. With eight
    worker threads completing jobs this turns eight fsyncs into one or two.
    """

    def __init__(self, tmp: Path, *, durable: bool) -> None:
        self.tmp = tmp
        self.durable = durable
        self._cond = threading.Condition()
        self._requested: dict[Path, int] = {}  # per folder: flushes asked for so far
        self._done: dict[Path, int] = {}  # per folder: requests covered by a finished flush
        self._busy: set[Path] = set()

    def write(self, destination: Path, data: bytes, *, mtime_ns: int | None = None) -> None:
        """Replace ``destination`` with ``data`` all at once (readers never see half a file)."""
        staged = self.stage(data, mtime_ns=mtime_ns)
        try:
            os.replace(staged, destination)
        except BaseException:
            _discard(staged)
            raise
        self.sync_folder(destination.parent)

    def stage(self, data: bytes, *, mtime_ns: int | None = None, sync: bool | None = None) -> Path:
        """Write ``data`` to a fresh file in tmp/ and return its path (caller renames it).

        The file's content is flushed before it is renamed anywhere, so after a
        power cut a job file is either absent or whole, never empty.
        """
        path = self.tmp / f"{uuid.uuid4().hex}.new"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                written = os.write(fd, data)
                if written != len(data):  # a short write: the disk filled up under us
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                if self.durable if sync is None else sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if mtime_ns is not None:
                os.utime(path, ns=(mtime_ns, mtime_ns))
        except BaseException:
            _discard(path)  # a full disk must not leave tmp/*.new files behind
            raise
        return path

    def sync_filesystem(self) -> None:
        """Flush every written file of the store's file system at once (a batch add).

        ``syncfs`` (Linux) flushes only the file system holding the store;
        elsewhere ``sync`` flushes them all. Either is far cheaper than one
        fsync per file for a batch of a thousand new jobs.
        """
        if not self.durable:
            return
        if _syncfs is not None:
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                if _syncfs(fd) == 0:
                    return
            finally:
                os.close(fd)
        os.sync()

    def sync_folder(self, folder: Path) -> None:
        """Make the renames already done into (or out of) ``folder`` durable."""
        if not self.durable:
            return
        with self._cond:
            ticket = self._requested.get(folder, 0) + 1
            self._requested[folder] = ticket
            while self._done.get(folder, 0) < ticket:
                if folder in self._busy:
                    self._cond.wait()
                    continue
                self._busy.add(folder)
                covers = self._requested[folder]  # every rename before this point
                self._cond.release()
                try:
                    _fsync_folder(folder)
                finally:
                    self._cond.acquire()
                    self._busy.discard(folder)
                    self._cond.notify_all()
                self._done[folder] = max(self._done.get(folder, 0), covers)


def _discard(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _find_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function = libc.syncfs
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_syncfs = _find_syncfs()


def read(path: str) -> bytes:
    """A whole (small) file, with fewer layers than ``Path.read_bytes``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def scan(folder: Path) -> Iterator[os.DirEntry[str]]:
    """The entries of ``folder`` (none if it does not exist)."""
    try:
        with os.scandir(folder) as entries:
            yield from entries
    except FileNotFoundError:
        return


def job_files(folder: Path) -> Iterator[str]:
    """The names of the job files in ``folder``."""
    for entry in scan(folder):
        if entry.name.endswith(layout.SUFFIX):
            yield entry.name


def mtime_ns(folder: Path) -> int:
    """The modification time of ``folder`` (0 if it does not exist)."""
    try:
        return folder.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def unlink(path: Path) -> None:
    """Delete ``path`` if it is still there."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def remove_sidecar(path: str) -> None:
    """Delete a corrupt job's original bytes (a folder, if a folder sat where a job should)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        shutil.rmtree(path, ignore_errors=True)
