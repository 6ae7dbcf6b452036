"""An optional storage interface: a tiny key/value table shared by every worker.

Schedules keep their operator state here (paused flags, how far ticks were
enqueued), so a ``pause`` typed on one machine is obeyed by every worker. A
backend offers it by also subclassing ``KeyValueStore``; callers find it with
``key_value_of(storage)``. Keys are short ASCII paths (``schedule-paused/nightly``),
values small byte strings; there is no transaction across keys, and a write
replaces the value whole (last writer wins).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping

from .errors import UnsupportedOperation
from .storage import Storage

KEY = re.compile(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*")
MAX_KEY = 200


def check_key(key: str) -> str:
    """Keys are ``/``-separated names of letters, digits, ``_.-``, at most 200 characters."""
    if (
        len(key) > MAX_KEY
        or not KEY.fullmatch(key)
        or any(p.strip(".") == "" for p in key.split("/"))
    ):
        raise ValueError(
            f"key {key!r} is invalid: use '/'-separated names of letters, digits, '_.-'"
        )
    return key


class KeyValueStore(abc.ABC):
    """Small shared values beside the jobs (schedule state); last writer wins per key."""

    @abc.abstractmethod
    def kv_read(self, prefix: str) -> dict[str, bytes]:
        """Every key starting with ``prefix`` and its value, in one round trip."""

    @abc.abstractmethod
    def kv_write(self, items: Mapping[str, bytes | None]) -> None:
        """Set each key to its value (``None`` deletes it), in one round trip where possible."""


def key_value_of(storage: Storage) -> KeyValueStore | None:
    """``storage`` as a ``KeyValueStore``, or None if it offers none."""
    return storage if isinstance(storage, KeyValueStore) else None


def require_key_value(storage: Storage, operation: str) -> KeyValueStore:
    """``key_value_of(storage)`` or ``UnsupportedOperation`` naming ``operation``."""
    found = key_value_of(storage)
    if found is None:
        raise UnsupportedOperation(
            f"storage '{storage.name}' cannot {operation}: it keeps no shared key/value state "
            "(it does not implement oddjob_core.keyvalue.KeyValueStore)"
        )
    return found
