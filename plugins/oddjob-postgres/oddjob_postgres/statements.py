"""Every statement the storage sends, rendered once per schema.

Each operation is a single statement (one round trip), except the fast path of
``add`` (a binary COPY, then the notifications, in one transaction).
Notifications are sent by ``pg_notify`` in the same transaction as the change,
so they are delivered exactly when it commits: never for a rolled-back enqueue,
never before the row is visible to the woken worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from .migrations import quote

WAITING = "('scheduled', 'ready', 'retrying')"
FINISHED = "('succeeded', 'failed', 'cancelled')"

# The batch travels as one JSON array of envelopes (one msgspec encode on the
# client); the scalar columns are read out of each element on the server.
# clock_timestamp(), not now(): in a caller's long transaction now() is the
# transaction's start, which would file a job due now as 'scheduled' and
# suppress its wake-up.
_INSERT = """
WITH ins AS (
    INSERT INTO {s}.jobs (id, queue, target, state, priority, run_at, attempts, envelope,
                          errors, created_at, updated_at)
    SELECT (e->>'id')::uuid, e->>'queue', e->>'target',
           CASE WHEN (e->>'run_at')::timestamptz <= clock_timestamp() THEN 'ready'
                ELSE 'scheduled' END,
           coalesce((e->>'priority')::int, 0), (e->>'run_at')::timestamptz,
           coalesce((e->>'attempts')::int, 0), e, coalesce(e->'errors', '[]'),
           (e->>'created_at')::timestamptz, now()
    FROM jsonb_array_elements(%(envelopes)s::jsonb) AS e
    ON CONFLICT (id) DO NOTHING
    RETURNING queue, state
)
SELECT count(*) FROM (
    SELECT pg_notify(%(channel)s, q.queue)
    FROM (SELECT DISTINCT queue FROM ins WHERE state = 'ready') AS q
) AS n
"""

# The fast path of ``add`` for new jobs (no attempts, no errors yet): the scalar columns
# and the encoded envelope go in by binary COPY, faster than the JSON-array insert above
# for large batches (attempts, errors and updated_at take their defaults); then
# one notification per queue that got a job due now, in the same transaction. COPY
# cannot skip a duplicate id: the storage falls back to the insert above for that.
_COPY_NEW = """
COPY {s}.jobs (id, queue, target, state, priority, run_at, envelope, created_at)
FROM STDIN (FORMAT BINARY)
"""
COPY_NEW_TYPES = ("uuid", "text", "text", "text", "int4", "timestamptz", "jsonb", "timestamptz")

_NOTIFY_QUEUES = """
SELECT count(pg_notify(%(channel)s, q)) FROM unnest(%(queues)s::text[]) AS q
"""

# Expired leases first (a crashed worker's jobs), then due waiting jobs in
# priority / run_at / id order. SKIP LOCKED lets concurrent claimers pass each
# other; the row conditions are re-checked on the newest row version. The
# update finds its rows through ``id = ANY(ARRAY(...))``: a primary-key lookup
# whatever the planner guesses about the CTEs' sizes (a join here can turn
# into a sequential scan of the whole history).
_CLAIM = """
WITH expired AS (
    SELECT id FROM {s}.jobs
    WHERE queue = %(queue)s AND state = 'running' AND lease_expires_at <= now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id FROM {s}.jobs
    WHERE queue = %(queue)s AND state IN {waiting} AND run_at <= now()
    ORDER BY priority DESC, run_at, id
    LIMIT greatest(0, %(limit)s - (SELECT count(*) FROM expired))
    FOR UPDATE SKIP LOCKED
)
UPDATE {s}.jobs AS j
SET state = 'running',
    -- saturates: a row at the integer maximum (written by SQL) must not stop every claim
    -- of its queue with "integer out of range"; the storage fails it as corrupt
    attempts = CASE WHEN j.attempts < 2147483647 THEN j.attempts + 1 ELSE j.attempts END,
    token = nextval('{s}.claim_tokens'),
    lease_owner = %(owner)s,
    lease_expires_at = now() + %(lease)s * interval '1 second',
    updated_at = now()
WHERE j.id = ANY(ARRAY(SELECT id FROM expired UNION ALL SELECT id FROM due))
RETURNING j.id, j.envelope, j.attempts, j.run_at, j.errors, j.token, j.lease_expires_at,
          j.id = ANY(ARRAY(SELECT id FROM expired))
"""

# Outcome writes test the state as ``(state || '') = 'running'``: the same
# condition, but one the planner cannot match to the partial index
# ``jobs_leases``. Written plainly, the planner sometimes scans every running
# row of the queue through that index instead of looking the id up in the
# primary key, which gets worse the more workers run.
RUNNING = "(state || '') = 'running'"

_FENCE = "WHERE id = %(id)s AND token = %(token)s AND {running}"

# Successes, one or many per statement (``complete`` is a batch of one). A token is unique across
# all claims ever made (a sequence), so "id in ids and token in tokens" matches
# exactly the claims that still own their rows, through the primary key.
_COMPLETE = """
UPDATE {s}.jobs
SET state = 'succeeded', result = nullif(%(results)s::jsonb -> id::text, 'null'),
    updated_at = now(), finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
WHERE id = ANY(%(ids)s::uuid[]) AND token = ANY(%(tokens)s::bigint[]) AND {running}
RETURNING id
"""

_COMPLETED = """
SELECT id FROM {s}.jobs
WHERE id = ANY(%(ids)s::uuid[]) AND token = ANY(%(tokens)s::bigint[]) AND state = 'succeeded'
"""

_FAIL = (
    """
UPDATE {s}.jobs
SET state = 'failed', errors = errors || %(error)s::jsonb, updated_at = now(),
    finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
"""
    + _FENCE
)

_RETRY = (
    """
WITH u AS (
    UPDATE {s}.jobs
    SET state = 'retrying', run_at = %(run_at)s, errors = errors || %(error)s::jsonb,
        updated_at = now(), lease_owner = NULL, lease_expires_at = NULL
    """
    + _FENCE
    + """
    RETURNING queue, run_at
), n AS (
    SELECT pg_notify(%(channel)s, queue) FROM u WHERE run_at <= now()
)
SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)
"""
)

# Did an earlier attempt of this write already land (its reply lost with the connection)?
_LANDED = "SELECT 1 FROM {s}.jobs WHERE id = %(id)s AND token = %(token)s AND state = %(state)s"

_RELEASE = """
WITH u AS (
    UPDATE {s}.jobs
    SET state = 'ready', attempts = greatest(attempts - 1, 0), lease_owner = NULL,
        lease_expires_at = NULL, updated_at = now()
    WHERE id = ANY(%(ids)s::uuid[]) AND token = ANY(%(tokens)s::bigint[]) AND {running}
    RETURNING queue
), n AS (
    SELECT pg_notify(%(channel)s, q.queue) FROM (SELECT DISTINCT queue FROM u) AS q
)
SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)
"""

_EXTEND = """
UPDATE {s}.jobs
SET lease_expires_at = now() + %(lease)s * interval '1 second'
WHERE id = ANY(%(ids)s::uuid[]) AND token = ANY(%(tokens)s::bigint[]) AND {running}
RETURNING id
"""

# The earliest run_at of the queue's waiting rows, as one seek into the claim index
# per priority level (a loose index scan: the first entry of each level is its
# earliest run_at), then the earliest lease expiry (jobs_leases). Reading "any
# ready row" in claim order instead walked every scheduled entry of the queue to
# find none (25,000 buffers for 25,000 scheduled jobs; this reads ~15). Cost grows
# with the number of distinct priorities in the queue, not with its jobs.
_NEXT_DUE = """
WITH RECURSIVE levels (priority, run_at) AS (
    (SELECT priority, run_at FROM {s}.jobs
     WHERE queue = %(queue)s AND state IN {waiting}
     ORDER BY priority DESC, run_at, id LIMIT 1)
    UNION ALL
    SELECT below.priority, below.run_at FROM levels, LATERAL (
        SELECT priority, run_at FROM {s}.jobs
        WHERE queue = %(queue)s AND state IN {waiting} AND priority < levels.priority
        ORDER BY priority DESC, run_at, id LIMIT 1
    ) AS below
)
SELECT least(
    (SELECT min(run_at) FROM levels),
    (SELECT min(lease_expires_at) FROM {s}.jobs WHERE queue = %(queue)s AND state = 'running')
)
"""

_CANCEL = """
UPDATE {s}.jobs SET state = 'cancelled', updated_at = now(), finished_at = now()
WHERE id = %(id)s AND state IN {waiting}
"""

# Any job but a running one: its worker holds the lease (JobManagement.delete).
_DELETE = "DELETE FROM {s}.jobs WHERE id = %(id)s AND state <> 'running'"

_REQUEUE = """
WITH u AS (
    UPDATE {s}.jobs
    SET run_at = coalesce(%(run_at)s::timestamptz, now()),
        state = CASE WHEN coalesce(%(run_at)s::timestamptz, now()) <= now()
                     THEN 'ready' ELSE 'scheduled' END,
        attempts = 0, result = NULL, finished_at = NULL, updated_at = now()
    WHERE id = %(id)s AND state IN {finished}
    RETURNING queue, state
), n AS (
    SELECT pg_notify(%(channel)s, queue) FROM u WHERE state = 'ready'
)
SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)
"""


@dataclass(frozen=True)
class Statements:
    """The SQL text of every operation for one schema."""

    insert: str
    copy_new: str
    notify_queues: str
    claim: str
    complete: str
    completed: str
    fail: str
    retry: str
    landed: str
    release: str
    extend: str
    next_due: str
    cancel: str
    requeue: str
    delete: str
    table: str


def render(schema: str) -> Statements:
    """Splice the (validated, quoted) schema into every statement."""
    s = quote(schema)

    def r(text: str) -> str:
        return (
            text.replace("{s}", s)
            .replace("{waiting}", WAITING)
            .replace("{finished}", FINISHED)
            .replace("{running}", RUNNING)
        ).strip()

    return Statements(
        insert=r(_INSERT),
        copy_new=r(_COPY_NEW),
        notify_queues=r(_NOTIFY_QUEUES),
        claim=r(_CLAIM),
        complete=r(_COMPLETE),
        completed=r(_COMPLETED),
        fail=r(_FAIL),
        retry=r(_RETRY),
        landed=r(_LANDED),
        release=r(_RELEASE),
        extend=r(_EXTEND),
        next_due=r(_NEXT_DUE),
        cancel=r(_CANCEL),
        requeue=r(_REQUEUE),
        delete=r(_DELETE),
        table=f"{s}.jobs",
    )
