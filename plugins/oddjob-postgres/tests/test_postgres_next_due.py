"""next_due reads a few index pages, however many jobs are scheduled: plan shape and buffers.

Idle workers call it between polls, and the dashboard for its lag. It used to ask
"any ready row?" in claim order, which walked every scheduled entry of the queue
to find none: 300-600 ms for 25,000 scheduled jobs at 1,000,000 rows. The checks
count buffers (pages read), never time: the old statement, kept here as the
negative control, must fail the same bound on the same data.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from oddjob_postgres import PostgresStorage
from oddjob_postgres.storage import statements

from oddjob_core.clock import utcnow
from oddjob_core.testing import make_envelope

SCHEDULED = 6000
PRIORITIES = (0, 1, 2)  # a seek per distinct priority

# The part of the statement before #16's fix that walked: "the first ready row in
# claim order" reads every scheduled entry of the queue on its way to none.
WALKING = """
SELECT run_at FROM {s}.jobs WHERE queue = %(queue)s AND state = 'ready'
ORDER BY priority DESC, run_at, id LIMIT 1
"""


def _plan(admin: psycopg.Connection[Any], sql: str, queue: str) -> dict[str, Any]:
    row = admin.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, {"queue": queue})
    found = row.fetchone()
    assert found is not None
    plan: dict[str, Any] = found[0][0]["Plan"]
    return plan


def _buffers(plan: dict[str, Any]) -> int:
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


def _nodes(plan: dict[str, Any]) -> list[str]:
    names = [f"{plan['Node Type']} {plan.get('Index Name', '')}".strip()]
    for child in plan.get("Plans", []):
        names += _nodes(child)
    return names


def test_next_due_seeks_once_per_priority_among_many_scheduled_jobs(
    storage: PostgresStorage, admin: psycopg.Connection[Any]
) -> None:
    soon = utcnow() + timedelta(seconds=100)
    storage.add(
        [
            make_envelope("later", delay=600 + i, priority=PRIORITIES[i % len(PRIORITIES)])
            for i in range(SCHEDULED)
        ]
    )
    storage.add([make_envelope("later", run_at=soon, priority=0)])  # lowest level, earliest
    storage.add([make_envelope("busy") for _ in range(50)])
    storage.claim("busy", 20, 30.0, "w")
    admin.execute(f'VACUUM ANALYZE "{storage.schema}".jobs')
    sql = statements(storage.schema).next_due

    due = storage.next_due("later")
    assert due is not None
    assert abs((due - soon).total_seconds()) < 0.001  # every level was looked at
    plan = _plan(admin, sql, "later")
    nodes = _nodes(plan)
    assert "Recursive Union" in nodes
    assert "Index Only Scan jobs_claim_order" in nodes or "Index Scan jobs_claim_order" in nodes
    assert not any(n.startswith(("Seq Scan", "Sort", "Bitmap")) for n in nodes), nodes
    assert _buffers(plan) < 100, _buffers(plan)

    walked = _plan(admin, WALKING.replace("{s}", f'"{storage.schema}"'), "later")
    assert _buffers(walked) > 10 * _buffers(plan)  # the control: the old shape fails the bound


def test_next_due_prefers_a_ready_job_and_a_lease_expiry_to_scheduled_ones(
    storage: PostgresStorage,
) -> None:
    storage.add([make_envelope("mixed", delay=3600, priority=9) for _ in range(20)])
    assert (due := storage.next_due("mixed")) is not None
    assert due > utcnow()
    ready = make_envelope("mixed", priority=-5)
    storage.add([ready])
    assert storage.next_due("mixed") == ready.run_at
    [claim] = storage.claim("mixed", 1, 30.0, "w")
    assert claim.job.id == ready.id
    assert storage.next_due("mixed") == claim.lease_expires_at
