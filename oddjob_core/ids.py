"""Time-ordered job ids (UUIDv7, RFC 9562) made on the client, in creation order per process.

Layout (RFC 9562, section 6.2, method 1: a fixed bit-length dedicated counter):

    48-bit Unix milliseconds | version 7 | 48-bit sequence | variant | 26 random bits

(the sequence fills the 12-bit ``rand_a`` field and the high 36 bits of ``rand_b``). The
sequence is one process-wide ``itertools.count`` from a random start; taking its next value
is a single atomic step, so no thread ever waits here. (A lock that every enqueue took made
16 producer threads queue behind one another: about two context switches per id, half
their CPU.) An id made after another one was returned, by any thread of the process, sorts
after it: its millisecond is not earlier and its sequence is larger. Ids of different
processes differ in their sequences' random starts and in the random bits.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid

_SEQUENCE_BITS = 48
_RANDOM_BITS = 26
_LOW_SEQUENCE_BITS = 62 - _RANDOM_BITS  # the sequence's bits that go into rand_b

#: Random bits are read from the OS a few KiB at a time: one ``os.urandom`` system call
#: per id was a third of the cost of building an envelope.
_POOL_IDS = 1024
_pool: list[int] = []


def _new_sequence() -> itertools.count[int]:
    """A sequence from a random start in the lower half: 2**47 ids before it could wrap."""
    return itertools.count(int.from_bytes(os.urandom(8)) >> (64 - _SEQUENCE_BITS + 1))


_sequence = _new_sequence()
_last_ms = 0


def _random_bits() -> int:
    """26 random bits; ``list.pop`` is atomic, and two threads refilling at once only add more."""
    try:
        return _pool.pop()
    except IndexError:
        raw = os.urandom(4 * _POOL_IDS)
        mask = (1 << _RANDOM_BITS) - 1
        fresh = [int.from_bytes(raw[i : i + 4]) & mask for i in range(0, len(raw), 4)]
        bits = fresh.pop()
        _pool.extend(fresh)
        return bits


def _after_fork_in_child() -> None:
    """A forked child must not repeat its parent's sequence or random values: its ids would."""
    global _sequence
    _sequence = _new_sequence()
    _pool.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def uuid7() -> uuid.UUID:
    """A UUIDv7 that sorts after every id this process returned before (see the module doc)."""
    global _last_ms
    sequence = next(_sequence) & ((1 << _SEQUENCE_BITS) - 1)
    ms = time.time_ns() // 1_000_000
    if ms < _last_ms:  # the wall clock stepped back: keep ids in order
        ms = _last_ms
    else:
        _last_ms = ms
    value = (
        (ms & ((1 << 48) - 1)) << 80
        | 0x7 << 76
        | (sequence >> _LOW_SEQUENCE_BITS) << 64
        | 0b10 << 62
        | (sequence & ((1 << _LOW_SEQUENCE_BITS) - 1)) << _RANDOM_BITS
        | _random_bits()
    )
    # what uuid.UUID(int=value) builds, without its argument checks (the value is in range by
    # construction): 0.6 instead of 1.5 us of the ~8 us an enqueue spends before its storage
    made = _new_uuid(uuid.UUID)
    _set(made, "int", value)
    _set(made, "is_safe", _UNKNOWN)
    return made


_new_uuid = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown
