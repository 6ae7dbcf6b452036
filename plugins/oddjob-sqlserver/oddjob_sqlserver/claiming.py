"""The claim batch: promote due rows to ready, recover expired leases, claim ready rows.

Claims read an index over ready rows only (migration 3), so neither running
rows nor future scheduled rows are walked by a claim or an idle poll (#18
item 5). Rows become ready in three ways: an insert or requeue whose run_at
has passed, a release, and the first two statements of this batch:

* promotion: due ``scheduled``/``retrying`` rows, found by a seek on the
  pending index (``queue, run_at`` over those two states), earliest first;
* recovery: ``running`` rows whose lease expired (a crashed worker's), found by
  a seek on the leases index. They become ready with their expired
  ``lease_expires_at`` kept: the claim outputs it, and a non-NULL one means
  the job was recovered (every other way into ``ready`` clears it).

Each of the two takes at most ``PROMOTE_BATCH`` rows per claim, skips rows
other claimers hold (READPAST) and is a statement of its own (autocommit), so
its locks last one statement. The whole batch is one round trip. Due rows
beyond the batch wait for the next claim: only with more than 1,000 rows
falling due between two claims of a queue can a due high-priority row be
claimed after a ready lower-priority one.
"""

from __future__ import annotations

from typing import Any

from .migrations import PENDING, state_list
from .names import Names

#: rows one claim promotes (and, separately, recovers) at most
PROMOTE_BATCH = 1000

#: the claim's output columns, in order (read by ``SqlServerStorage.claim``): the claimed
#: row, then its lease expiry before the claim (non-NULL only for a recovered job)
CLAIM_OUTPUT = ", ".join(
    [
        *(f"inserted.{c}" for c in ("seq", "id", "envelope", "attempts", "run_at", "errors")),
        *("inserted.token", "inserted.lease_expires_at", "deleted.lease_expires_at"),
    ]
)

#: the batch's parameters, by position: what ``claim_parameters`` returns
CLAIM_PARAMETERS = ("queue", "queue", "limit", "queue", "owner", "lease_ms")


def _to_ready(names: Names, cte: str, where: str, order: str) -> str:
    """At most ``PROMOTE_BATCH`` rows of queue ``?`` matching ``where`` become ready, ``order`` first."""
    return f"""
WITH {cte} AS (
    SELECT TOP ({PROMOTE_BATCH}) state, updated_at
    FROM {names.jobs} WITH (UPDLOCK, READPAST, ROWLOCK, FORCESEEK)
    WHERE queue = ? AND {where}
    ORDER BY {order}
)
UPDATE {cte} SET state = N'ready', updated_at = SYSUTCDATETIME()
""".strip()


def promote(names: Names) -> str:
    """Due scheduled and retrying rows of queue ``?`` become ready (seek on the pending index)."""
    return _to_ready(
        names, "due", f"state IN {state_list(PENDING)} AND run_at <= SYSUTCDATETIME()", "run_at"
    )


def recover(names: Names) -> str:
    """Running rows of queue ``?`` whose lease expired become ready (seek on the leases index)."""
    return _to_ready(
        names,
        "expired",
        "state = N'running' AND lease_expires_at <= SYSUTCDATETIME()",
        "lease_expires_at",
    )


def claim_ready(names: Names) -> str:
    """Lease up to ``?`` ready jobs of queue ``?``, in claim order, in one statement.

    The CTE walks the ready index in claim order (priority, then run_at, then
    insertion); UPDLOCK locks each row it returns, READPAST skips rows another
    claimer holds instead of waiting, ROWLOCK keeps the locks small. FORCESEEK
    (as Hangfire.SqlServer's fetch does) pins a seek: a plan that scanned the
    table would take update locks on every row it read and serialize every
    claimer of every queue behind one. Parameters: limit, queue, owner, lease ms.
    """
    return f"""
WITH due AS (
    SELECT TOP (?) *
    FROM {names.jobs} WITH (UPDLOCK, READPAST, ROWLOCK, FORCESEEK)
    WHERE queue = ? AND state = N'ready'
    ORDER BY priority DESC, run_at, seq
)
UPDATE due
SET state = N'running',
    token = NEWID(),
    attempts = attempts + 1,
    lease_owner = ?,
    lease_expires_at = DATEADD(millisecond, CONVERT(int, ?), SYSUTCDATETIME()),
    updated_at = SYSUTCDATETIME()
OUTPUT {CLAIM_OUTPUT}
""".strip()


def claim_batch(names: Names) -> str:
    """Promotion, recovery and the claim as one batch (one round trip); see ``claim_parameters``."""
    return ";\n".join((promote(names), recover(names), claim_ready(names)))


def claim_parameters(queue: str, limit: int, owner: str, lease_ms: int) -> tuple[Any, ...]:
    """The batch's parameters in ``CLAIM_PARAMETERS`` order."""
    values = {"queue": queue, "limit": limit, "owner": owner, "lease_ms": lease_ms}
    return tuple(values[name] for name in CLAIM_PARAMETERS)


def output_rows(cursor: Any) -> list[Any]:
    """The rows of the batch's first result set with columns (after the row counts)."""
    while cursor.description is None:
        if not cursor.nextset():
            return []
    return list(cursor.fetchall())
