"""The SQL Server store's unique keys: a filtered unique index over waiting and running jobs.

Migration 4 adds the column ``unique_key`` (the envelope's ``key``, filled by
the insert) and the unique index ``UX_<prefix>jobs_unique_key`` on ``(queue,
unique_key)`` over rows with a key in a waiting or running state: the
database itself refuses a second live job with a key, and a job that finishes
leaves the index, which releases its key.

``add_unique`` is one batch with its own transaction (one round trip): it
looks the key's holder up with ``UPDLOCK, HOLDLOCK`` on that index — a
key-range lock, so a concurrent ``add_unique`` of the same key and queue waits
here instead of inserting too — inserts the job when there is none, reads the
holder again (the new job, unless its id was already stored) and commits.

Requeueing a finished keyed job whose key another live job holds fails on the
index (Msg 2601); ``requeue_unless_held`` turns that into ``KeyHeld`` naming
the holder, and the finished job stays as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyodbc  # type: ignore[import-not-found,unused-ignore]  # its .pyi is not PEP 561 packaged

from oddjob_core.errors import KeyHeld, StorageError
from oddjob_core.model import Envelope
from oddjob_core.unique import UniqueKeys

from .database import error_numbers, message
from .migrations import CLAIMABLE, state_list
from .names import Names
from .parameters import declare_document_parameter
from .rows import as_uuid, insert_document

if TYPE_CHECKING:
    from .database import Database
    from .statements import Statements


@dataclass(frozen=True)
class UniqueStatements:
    """The T-SQL of unique keys for one installation."""

    names: Names
    insert: str  # ``Statements.insert``: one JSON document parameter

    @property
    def add_unique(self) -> str:
        """Parameters: the insert's document (first: declared nvarchar(max)), queue, key.

        Yields one row: the holder's id.
        """
        if self.insert.count("?") != 1:
            raise RuntimeError("the insert statement changed: update oddjob_sqlserver.unique")
        insert = self.insert.replace("?", "@document")
        holder = (
            f"SELECT @holder = id FROM {self.names.jobs}"
            " WITH (UPDLOCK, HOLDLOCK, INDEX({index}))\n"
            "WHERE queue = @queue AND unique_key = @key\n"
            f"  AND unique_key IS NOT NULL AND state IN {state_list(CLAIMABLE)}"
        ).replace("{index}", self.names.obj("UX", "unique_key"))
        return f"""
DECLARE @document nvarchar(max) = ?, @queue nvarchar(100) = ?, @key nvarchar(200) = ?;
DECLARE @holder uniqueidentifier;
BEGIN TRANSACTION;
{holder};
IF @holder IS NULL
BEGIN
{insert};
{holder};
END;
COMMIT TRANSACTION;
SELECT @holder AS holder
""".strip()

    @property
    def key_holder(self) -> str:
        """The live job holding the key of job ``?`` (another one): queue, key, holder id."""
        jobs = self.names.jobs
        return f"""
SELECT j.queue, j.unique_key, h.id
FROM {jobs} AS j
INNER JOIN {jobs} AS h ON h.queue = j.queue AND h.unique_key = j.unique_key AND h.id <> j.id
WHERE j.id = ? AND h.unique_key IS NOT NULL AND h.state IN {state_list(CLAIMABLE)}
""".strip()

    def catalog(self) -> Iterator[tuple[str, str]]:
        """``(name, sql)`` of every statement above, for the grammar test's catalog."""
        yield "unique.add_unique", self.add_unique
        yield "unique.key_holder", self.key_holder


def is_key_violation(exc: BaseException, names: Names) -> bool:
    """``exc`` is the unique-key index refusing a second live job with a key (Msg 2601)."""
    index = names.obj("UX", "unique_key").strip("[]")
    return 2601 in error_numbers(exc) and index in message(exc)


def requeue_unless_held(
    cursor: Any, names: Names, requeue: str, params: Sequence[Any], job_id: uuid.UUID
) -> bool:
    """Run the requeue statement; ``KeyHeld`` when another live job holds the job's key.

    The statement fails as a whole on the index (nothing changes, XACT_ABORT);
    the holder is then read on the same connection. If it finished meanwhile,
    the requeue is tried once more.
    """
    for _ in range(2):
        try:
            return len(cursor.execute(requeue, *params).fetchall()) == 1
        except pyodbc.Error as exc:
            if not is_key_violation(exc, names):
                raise
        row = cursor.execute(UniqueStatements(names, "?").key_holder, job_id).fetchone()
        if row is not None:
            raise KeyHeld(job_id, str(row[1]), str(row[0]), as_uuid(row[2]))
    return False


class SqlServerUniqueKeys(UniqueKeys):
    """Mixed into ``SqlServerStorage``."""

    names: Names
    database: Database
    sql: Statements

    def add_unique(self, job: Envelope) -> uuid.UUID:
        if job.key is None:
            raise ValueError("add_unique needs a job with a key")
        statement = UniqueStatements(self.names, self.sql.insert).add_unique
        params = (insert_document([job]), job.queue, job.key)

        def write(cur: Any, _: bool) -> Any:
            declare_document_parameter(cur)
            cur.execute(statement, *params)
            while cur.description is None:  # the row counts of the batch's statements
                if not cur.nextset():
                    return None
            row = cur.fetchone()
            return row[0] if row else None

        holder = self.database.run(f"adding job {job.id} with key {job.key!r}", write)
        if holder is None:  # the insert skipped the job: its id is stored, and holds no live key
            raise StorageError(
                f"could not take unique key {job.key!r} of queue '{job.queue}' for job {job.id}: "
                "a job with this id is stored already and is finished"
            )
        return as_uuid(holder)


__all__ = ["SqlServerUniqueKeys", "UniqueStatements", "is_key_violation", "requeue_unless_held"]
