"""Job ids sort by creation; retry waits follow the policy."""

from __future__ import annotations

import copy
import os
import pickle
import uuid

import msgspec
import pytest

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


def test_a_forked_child_does_not_repeat_its_parents_random_bits() -> None:
    """The random part of ids is pooled; a child process must draw fresh bits, not the parent's."""
    uuid7()  # the parent's pool now holds unused random values
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        os.write(write_end, b"".join(uuid7().bytes[8:] for _ in range(50)))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    child_bits = {child[i : i + 8] for i in range(0, len(child), 8)}
    parent_bits = {uuid7().bytes[8:] for _ in range(50)}
    assert len(child_bits) == 50
    assert not child_bits & parent_bits


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
