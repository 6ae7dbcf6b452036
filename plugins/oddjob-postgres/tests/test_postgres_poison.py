"""Poison rows on PostgreSQL (issue #12): each is failed alone; no claim raises after committing."""

from __future__ import annotations

from typing import Any

import psycopg
from oddjob_postgres import PostgresStorage

from oddjob_core.model import JobState
from oddjob_core.testing import make_envelope
from oddjob_core.testing.suite_base import drain


def test_a_row_at_the_integer_maximum_of_attempts_does_not_stop_its_queue(
    storage: PostgresStorage, admin: psycopg.Connection[Any]
) -> None:
    poison, *good = [make_envelope("maxed") for _ in range(4)]
    storage.add([poison, *good])
    admin.execute(
        f'UPDATE "{storage.schema}".jobs SET attempts = 2147483647 WHERE id = %s', (poison.id,)
    )
    claims = drain(storage, "maxed")  # raised "integer out of range" for every claim
    assert {c.job.id for c in claims} == {g.id for g in good}
    record = storage.get(poison.id)
    assert record is not None
    assert record.state is JobState.FAILED
    assert "integer maximum" in record.envelope.errors[-1].message
    assert storage.complete_many([(c, None) for c in claims]) == {}


def test_a_row_that_fails_to_decode_in_any_way_leaves_no_lease_behind(
    storage: PostgresStorage, admin: psycopg.Connection[Any]
) -> None:
    """A row whose errors column is garbage raised after the claim committed (not a msgspec
    envelope error): every claimed row stayed running until its lease ran out."""
    poison, *good = [make_envelope("odd") for _ in range(4)]
    storage.add([poison, *good])
    admin.execute(
        f'UPDATE "{storage.schema}".jobs SET errors = \'[{{"attempt": "x"}}]\' WHERE id = %s',
        (poison.id,),
    )
    claims = drain(storage, "odd")
    assert {c.job.id for c in claims} == {g.id for g in good}
    counts = storage.counts("odd")["odd"]
    assert counts.get(JobState.FAILED) == 1
    assert counts.get(JobState.RUNNING) == 3
