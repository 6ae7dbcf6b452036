"""An optional storage interface: unique jobs, at most one waiting or running job per (key, queue).

``app.options(key="invoice-42").enqueue(...)`` calls ``add_unique``: if a job of
that queue holding that key is waiting (scheduled, ready, retrying) or running,
nothing is stored and its id comes back; otherwise the new job is stored. A key
is released when its job finishes (succeeded, failed, cancelled), so the next
enqueue with it stores a new job. A backend offers it by also subclassing
``UniqueKeys``; callers find it with ``unique_keys_of(storage)``.
"""

from __future__ import annotations

import abc
import uuid

from .errors import UnsupportedOperation
from .model import Envelope
from .storage import Storage

MAX_KEY = 200


def check_unique_key(key: str) -> str:
    """A key is 1-200 characters of any kind."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY:
        raise ValueError(f"unique key {key!r} must be a string of 1 to {MAX_KEY} characters")
    return key


class UniqueKeys(abc.ABC):
    """Stores a keyed job only while no waiting or running job of its queue holds the key."""

    @abc.abstractmethod
    def add_unique(self, job: Envelope) -> uuid.UUID:
        """Store ``job`` (whose ``key`` is set) unless its key is held; return the holder's id.

        The holder is the waiting or running job of ``job.queue`` with ``job.key``:
        ``job.id`` when ``job`` was stored now. Atomic against concurrent calls
        with the same key and queue, from any process.
        """


def unique_keys_of(storage: Storage) -> UniqueKeys | None:
    """``storage`` as ``UniqueKeys``, or None if it cannot keep keys unique."""
    return storage if isinstance(storage, UniqueKeys) else None


def require_unique_keys(storage: Storage) -> UniqueKeys:
    """``unique_keys_of(storage)`` or ``UnsupportedOperation`` saying so."""
    found = unique_keys_of(storage)
    if found is None:
        raise UnsupportedOperation(
            f"storage '{storage.name}' cannot keep unique job keys (it does not implement "
            "oddjob_core.unique.UniqueKeys); enqueue without key= or use a store that can"
        )
    return found
