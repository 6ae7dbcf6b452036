"""Retention sweeps on SQL Server: one worker at a time, never in the claimers' way.

Every worker runs a sweeper (oddjob_core.retention); here each batch first
takes a transaction-owned application lock with no wait: a worker that does
not get it skips this sweep, since another worker is doing it. The batch runs
at ``DEADLOCK_PRIORITY LOW`` (if it ever deadlocks with a claim, the sweep is
the victim) and deletes with ``READPAST`` (rows another transaction holds are
left for the next sweep).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from oddjob_core.model import JobState
from oddjob_core.storage import QueueManagement

from .management import purge_plan
from .statements import PURGE_BATCH

if TYPE_CHECKING:
    import pyodbc  # type: ignore[import-not-found,unused-ignore]

    from .storage import SqlServerStorage


def sweep_statement(delete: str, resource: str) -> str:
    """``delete`` (one purge batch) behind a no-wait applock at low deadlock priority.

    Yields one row ``(locked, deleted)``: locked is sp_getapplock's result
    (< 0: another worker sweeps), deleted the rows this batch removed.
    """
    delete = delete.replace("WITH (ROWLOCK)", "WITH (ROWLOCK, READPAST)")
    delete = delete.replace("OUTPUT deleted.seq", "OUTPUT deleted.seq INTO @gone")
    return f"""
IF @@TRANCOUNT = 0 BEGIN TRANSACTION;
SET DEADLOCK_PRIORITY LOW;
DECLARE @locked int, @gone TABLE (seq bigint);
EXEC @locked = sp_getapplock @Resource = N'{resource}', @LockMode = N'Exclusive',
    @LockOwner = N'Transaction', @LockTimeout = 0;
IF @locked >= 0
    {delete};
SET DEADLOCK_PRIORITY NORMAL;
SELECT @locked AS locked, (SELECT COUNT(*) FROM @gone) AS deleted
""".strip()


class RetentionPurge(QueueManagement):
    """What RetentionSweeper calls ``purge`` on: the storage's purge, coordinated across workers."""

    def __init__(self, storage: SqlServerStorage) -> None:
        self.storage = storage

    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        return self.storage.counts(queue)

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        return self.storage.requeue(job_id, run_at)

    def purge_finished(
        self, states: tuple[JobState, ...], older_than: datetime | None, queue: str | None
    ) -> int:
        st = self.storage
        plan = purge_plan(st.sql, states, older_than, queue)
        if plan is None:
            return 0
        statement = sweep_statement(plan[0], st.names.lock_resource + ":retention")
        args = plan[1]
        total = 0
        while True:
            locked, n = st.database.run(  # atomic: the applock is owned by the transaction
                "sweeping expired jobs", lambda cur, _: _one(cur, statement, args), atomic=True
            )
            total += n
            if locked < 0 or n < PURGE_BATCH:
                return total


def _one(cursor: pyodbc.Cursor, statement: str, args: Sequence[Any]) -> tuple[int, int]:
    cursor.execute(statement, *args)
    while cursor.description is None or len(cursor.description) != 2:
        if not cursor.nextset():
            return -1, 0
    row = cursor.fetchone()
    return (int(row[0]), int(row[1])) if row else (-1, 0)


__all__ = ["RetentionPurge", "sweep_statement"]
