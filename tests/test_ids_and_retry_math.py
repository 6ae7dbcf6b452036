"""Job ids sort by creation; retry waits follow the policy."""

from __future__ import annotations

import copy
import os
import pickle
import threading
import time
import uuid

import msgspec
import pytest

from oddjob_core import ids
from oddjob_core.clock import utcnow
from oddjob_core.ids import uuid7
from oddjob_core.model import RetryPolicy
from oddjob_core.retrying import Retry, next_run_at, should_retry


def test_uuid7_ids_are_version_7_and_strictly_increasing() -> None:
    ids = [uuid7() for _ in range(20_000)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_uuid7_ids_behave_as_any_uuid() -> None:
    """uuid7 builds its UUID without ``UUID.__init__``: it must still be a whole UUID."""
    made = uuid7()
    parsed = uuid.UUID(str(made))
    assert made == parsed
    assert hash(made) == hash(parsed)
    assert made.is_safe == parsed.is_safe
    assert pickle.loads(pickle.dumps(made)) == made
    assert copy.deepcopy(made) == made
    assert msgspec.json.decode(msgspec.json.encode(made), type=uuid.UUID) == made
    assert made.variant == uuid.RFC_4122


def _parts(made: uuid.UUID) -> tuple[int, int]:
    """(sequence, random bits) of an id (see oddjob_core.ids)."""
    value = made.int
    sequence = ((value >> 64) & 0xFFF) << 36 | (value >> 26) & ((1 << 36) - 1)
    return sequence, value & ((1 << 26) - 1)


def test_a_forked_child_does_not_repeat_its_parents_sequence_or_random_bits() -> None:
    """A child continuing the parent's sequence and random pool would make the parent's ids."""
    uuid7()  # the parent's pool now holds unused random values
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        os.write(write_end, b"".join(uuid7().bytes for _ in range(50)))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    child_ids = [uuid.UUID(bytes=child[i : i + 16]) for i in range(0, len(child), 16)]
    parent_ids = [uuid7() for _ in range(50)]
    assert len(child_ids) == 50
    pairs = list(zip(map(_parts, child_ids), map(_parts, parent_ids), strict=True))
    assert sum(c[0] == p[0] for c, p in pairs) == 0  # sequences: the child's starts afresh
    assert sum(c[1] == p[1] for c, p in pairs) == 0  # random bits: not the parent's pool


def test_ids_of_every_thread_are_unique_and_each_thread_s_increase() -> None:
    """No lock guards uuid7: 8 threads at once still get unique, per-thread increasing ids,
    and every id made after they all returned sorts after all of theirs."""
    made: list[list[uuid.UUID]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def produce(out: list[uuid.UUID]) -> None:
        start.wait()
        out.extend(uuid7() for _ in range(5000))

    threads = [threading.Thread(target=produce, args=(out,)) for out in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in made for i in out]
    assert len(set(every)) == len(every) == 40_000
    assert all(out == sorted(out) for out in made)
    later = [uuid7() for _ in range(100)]
    assert min(later) > max(every)


def test_ids_stay_in_order_when_the_wall_clock_steps_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [time.time_ns()]

    class SteppingClock:
        @staticmethod
        def time_ns() -> int:
            now[0] -= 5_000_000  # 5 ms back on every call
            return now[0]

    first = uuid7()
    monkeypatch.setattr(ids, "time", SteppingClock)
    ids_made = [uuid7() for _ in range(100)]
    assert [first, *ids_made] == sorted([first, *ids_made])
    assert len(set(ids_made)) == 100


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(min_wait=1, backoff=2, max_wait=5, jitter=0)
    waits = [
        (next_run_at(policy, RuntimeError(), n) - utcnow()).total_seconds() for n in (1, 2, 3, 4)
    ]
    assert waits == pytest.approx([1, 2, 4, 5], abs=0.05)


def test_jitter_adds_at_most_its_share() -> None:
    policy = RetryPolicy(min_wait=10, jitter=0.5)
    waits = [
        (next_run_at(policy, RuntimeError(), 1) - utcnow()).total_seconds() for _ in range(200)
    ]
    assert min(waits) >= 9.9
    assert max(waits) <= 15.1
    assert max(waits) - min(waits) > 1  # jitter really varies


def test_retry_on_and_give_up_on_match_by_class_hierarchy() -> None:
    policy = RetryPolicy(retry_on=("builtins.OSError",), give_up_on=("PermissionError",))
    assert should_retry(policy, ConnectionError(), 1)  # subclass of OSError
    assert not should_retry(policy, PermissionError(), 1)  # give_up_on wins
    assert not should_retry(policy, ValueError(), 1)
    assert not should_retry(policy, ConnectionError(), 4)  # retries exhausted


def test_retry_request_counts_against_the_budget() -> None:
    policy = RetryPolicy(max_retries=2)
    assert should_retry(policy, Retry(delay=1), 2)
    assert not should_retry(policy, Retry(delay=1), 3)


def test_invalid_policies_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="min_wait <= max_wait"):
        RetryPolicy(min_wait=10, max_wait=1)
