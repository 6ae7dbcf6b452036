"""The memory store's shared key/value table (schedule state)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from ..keyvalue import KeyValueStore, check_key


class MemoryKeyValue(KeyValueStore):
    """A dict behind its own lock; mixed into ``MemoryStorage``."""

    _kv: dict[str, bytes]
    _kv_lock: threading.Lock

    def _kv_init(self) -> None:
        self._kv = {}
        self._kv_lock = threading.Lock()

    def kv_read(self, prefix: str) -> dict[str, bytes]:
        with self._kv_lock:
            return {k: v for k, v in self._kv.items() if k.startswith(prefix)}

    def kv_write(self, items: Mapping[str, bytes | None]) -> None:
        for key in items:
            check_key(key)
        with self._kv_lock:
            for key, value in items.items():
                if value is None:
                    self._kv.pop(key, None)
                else:
                    self._kv[key] = bytes(value)
