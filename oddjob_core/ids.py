"""Time-ordered job ids (UUIDv7, RFC 9562) made on the client, monotonic per process."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0

#: Random bits are read from the OS a few KiB at a time: one ``os.urandom`` system call
#: per id was a third of the cost of building an envelope.
_POOL_IDS = 512
_pool: list[int] = []


def _refill() -> None:
    """Fill the pool with 62-bit random values for the ``rand_b`` field (lock held)."""
    raw = os.urandom(8 * _POOL_IDS)
    mask = (1 << 62) - 1
    _pool[:] = [int.from_bytes(raw[i : i + 8]) & mask for i in range(0, len(raw), 8)]


def _forget_pool() -> None:
    """A forked child must not reuse its parent's random values: they would repeat its ids."""
    global _lock
    _lock = threading.Lock()
    _pool.clear()


os.register_at_fork(after_in_child=_forget_pool)


def uuid7() -> uuid.UUID:
    """A UUIDv7 whose 12-bit rand_a field is a counter, so ids made in one millisecond sort in order."""
    global _last_ms, _counter
    with _lock:
        if not _pool:
            _refill()
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = _pool.pop() & 0x1FF  # a random start; no system call under the lock
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter overflow: borrow the next millisecond
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
        if not _pool:
            _refill()
        rand_b = _pool.pop()
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    # what uuid.UUID(int=value) builds, without its argument checks (the value is in range by
    # construction): 0.6 instead of 1.5 us of the ~8 us an enqueue spends before its storage
    made = _new_uuid(uuid.UUID)
    _set(made, "int", value)
    _set(made, "is_safe", _UNKNOWN)
    return made


_new_uuid = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown
