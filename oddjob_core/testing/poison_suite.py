"""Poison isolation, tested on every backend: one bad job never stops a queue.

The rule (``oddjob_core.storage``): a stored job that cannot be decoded, routed
or written back is failed on its own, with the reason, and never blocks,
repeats or crashes the other jobs of its claim or batch.

``StorageSuite`` inherits these tests. A backend that can store a job whose
envelope disagrees with where it sits (another queue, another id) implements
``inject_misrouted_job``; the others skip that test visibly.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import pytest

from ..errors import StorageError
from ..model import Claim, JobState
from ..storage import Storage, management_of, queue_management_of
from .envelopes import make_envelope

LEASE = 30.0
OWNER = "poison-suite"
DEPTH = 3000  # deeper than any worker's default recursion limit (1000)


@contextmanager
def _recursion_limit(limit: int) -> Iterator[None]:
    """A producer that raised its own limit (how such a job gets enqueued)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _claim_until(storage: Storage, queue: str, want: set[uuid.UUID], timeout: float) -> list[Claim]:
    """Claim until every id of ``want`` came out (or ``timeout``); returns every claim made."""
    claims: list[Claim] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not want <= {c.job.id for c in claims}:
        got = storage.claim(queue, 50, LEASE, OWNER)
        claims.extend(got)
        if not got:
            time.sleep(0.05)
    return claims


class PoisonSuite:
    """Conformance tests for poison isolation (mixed into ``StorageSuite``)."""

    __test__ = False

    def inject_misrouted_job(self, storage: Storage, queue: str, kind: str) -> uuid.UUID:
        """Store a due job in ``queue`` whose envelope names another queue (``kind="queue"``)
        or another id (``kind="id"``) than where it is stored; return the id it is stored under.

        The default skips: a backend whose jobs cannot disagree with their place says why.
        """
        pytest.skip(f"{type(self).__name__} does not implement inject_misrouted_job")

    def test_poison_nested_past_the_recursion_limit_fails_alone(self, storage: Storage) -> None:
        queue = f"poison-deep-{uuid.uuid4().hex[:6]}"
        deep = make_envelope(queue, arguments={"n": 1, "s": _nested(DEPTH)})
        good = [make_envelope(queue) for _ in range(5)]
        with _recursion_limit(DEPTH * 4):
            storage.add([deep, *good])
        claims = _claim_until(storage, queue, {g.id for g in good}, timeout=15)
        claimed = {c.job.id for c in claims}
        assert {g.id for g in good} <= claimed, "the poison job blocked the good ones"
        errors = storage.complete_many([(c, None) for c in claims if c.job.id != deep.id])
        assert errors == {}
        if deep.id in claimed:  # a store that never decodes (memory): the runner fails it
            return
        if (jobs := management_of(storage)) is not None:
            record = jobs.get(deep.id)
            assert record is not None
            assert record.state is JobState.FAILED
            assert "recursion" in record.envelope.errors[-1].message
        elif (counted := queue_management_of(storage)) is not None:
            assert counted.counts(queue)[queue].get(JobState.FAILED) == 1
        assert _claim_until(storage, queue, {deep.id}, timeout=0.5) == [], "it repeats"

    def test_poison_batched_success_with_one_bad_claim_records_the_others(
        self, storage: Storage
    ) -> None:
        queue = f"poison-batch-{uuid.uuid4().hex[:6]}"
        good = [make_envelope(queue) for _ in range(3)]
        storage.add(good)
        claims = _claim_until(storage, queue, {g.id for g in good}, timeout=15)
        assert len(claims) == 3
        c = claims[0]
        bad = msgspec.structs.replace(
            c,
            job=msgspec.structs.replace(c.job, id=uuid.uuid4(), queue="../x"),
            token="0",
            receipt=None,
        )
        errors = storage.complete_many(
            [(claims[0], 1), (bad, 2), (claims[1], None), (claims[2], 3)]
        )
        assert set(errors) == {bad.job.id}
        assert isinstance(errors[bad.job.id], StorageError)
        if (jobs := management_of(storage)) is not None:
            for g in good:
                record = jobs.get(g.id)
                assert record is not None
                assert record.state is JobState.SUCCEEDED

    @pytest.mark.parametrize("kind", ["queue", "id"])
    def test_poison_misrouted_job_fails_alone(self, storage: Storage, kind: str) -> None:
        queue = f"poison-route-{uuid.uuid4().hex[:6]}"
        good = [make_envelope(queue) for _ in range(3)]
        stored_as = self.inject_misrouted_job(storage, queue, kind)
        storage.add(good)
        claims = _claim_until(storage, queue, {g.id for g in good}, timeout=15)
        assert {g.id for g in good} <= {c.job.id for c in claims}
        assert stored_as not in {c.job.id for c in claims}, "a misrouted job was handed out"
        assert storage.complete_many([(c, None) for c in claims]) == {}
        if (jobs := management_of(storage)) is not None:
            record = jobs.get(stored_as)
            assert record is not None
            assert record.state is JobState.FAILED
            assert "routed" in record.envelope.errors[-1].message
        assert _claim_until(storage, queue, {stored_as}, timeout=0.5) == [], "it repeats"
