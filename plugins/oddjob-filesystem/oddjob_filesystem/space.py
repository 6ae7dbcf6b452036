"""A full disk is a storage error, never a reason to run jobs that cannot be recorded.

- Every ``OSError`` of an add becomes a ``StorageError`` naming the folder (and
  saying "full" for ENOSPC/EDQUOT), so producers catch one exception type.
- A claim is refused while the file system holding the store has less than
  ``MIN_FREE`` bytes left: a job claimed then would run and its outcome could
  not be written (it would run again after its lease: every job twice).
- ``FileWriter`` removes its temporary file when a write fails (no ``tmp/*.new``
  left behind by a full disk).
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from oddjob_core.errors import StorageError

#: claims stop below this much free space (bytes) on the store's file system
MIN_FREE = 1 << 20
_FULL = {errno.ENOSPC, errno.EDQUOT}


def storage_error(exc: OSError, root: Path, what: str) -> StorageError:
    """The ``StorageError`` for an ``OSError`` while ``what`` in the store at ``root``."""
    if exc.errno in _FULL:
        return StorageError(
            f"{what} failed: the file system holding {root} is full ({exc.strerror}); "
            "free some space (purge finished jobs: oddjob jobs purge) and try again"
        )
    return StorageError(f"{what} in {root} failed: {exc}")


def free_bytes(root: Path) -> int | None:
    """Bytes free for us on the file system holding ``root`` (None: cannot tell)."""
    try:
        stat = os.statvfs(root)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


class AddRoom:
    """Refuses a journaled add (``journal``) that could not become job files: disk (nearly) full.

    One ``statvfs`` per enqueue was a quarter of its CPU; while the disk has
    ``PLENTY`` free, the answer is trusted for ``TRUST`` seconds (no enqueue burst
    fills 256 MiB that fast, and a write that still hits a full disk fails with
    the same ``StorageError``). Below that, every add looks again.
    """

    PLENTY = 256 << 20
    TRUST = 0.25

    def __init__(self, root: Path) -> None:
        self.root = root
        self._trusted_until = 0.0

    def check(self, jobs: int) -> None:
        now = time.monotonic()
        if now < self._trusted_until:
            return
        free = free_bytes(self.root)
        if free is not None and free < MIN_FREE:
            raise storage_error(
                OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), self.root, f"adding {jobs} job(s)"
            )
        if free is not None and free >= self.PLENTY:
            self._trusted_until = now + self.TRUST


def check_room(root: Path, minimum: int = MIN_FREE) -> None:
    """Raise ``StorageError`` when the store's file system has less than ``minimum`` bytes free."""
    free = free_bytes(root)
    if free is None:
        return  # cannot tell: let the writes say it
    if free < minimum:
        raise StorageError(
            f"not claiming jobs: the file system holding {root} has {free} bytes free "
            f"(less than {minimum}); their outcomes could not be recorded and every job "
            "would run twice; free some space (oddjob jobs purge)"
        )
