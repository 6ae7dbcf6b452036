"""Management of the SQL Server store: get, search, counts, cancel, requeue, purge, delete."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pyodbc  # type: ignore[import-not-found,unused-ignore]  # its .pyi is not PEP 561 packaged

from oddjob_core.model import JobQuery, JobRecord, JobState, Page
from oddjob_core.storage import JobManagement

from .checks import check_parameter_count
from .database import Database
from .names import Names
from .rows import argument_filter, record_from, to_db
from .statements import PURGE_BATCH, Statements
from .unique import requeue_unless_held


class Management(JobManagement):
    """Management statements on one jobs table."""

    def __init__(self, database: Database, sql: Statements, names: Names) -> None:
        self.database = database
        self.sql = sql
        self.names = names

    def get(self, job_id: uuid.UUID) -> JobRecord | None:
        row = self.database.run(
            f"reading job {job_id}", lambda cur, _: cur.execute(self.sql.get, job_id).fetchone()
        )
        return record_from(row) if row else None

    def search(self, query: JobQuery) -> Page:
        filters: list[str] = []
        params: list[Any] = []
        if query.queue is not None:
            filters.append("queue")
            params.append(query.queue)
        states = [JobState(s).value for s in query.states] if query.states is not None else None
        if states is not None:
            if not states:
                return Page(jobs=[], total=0, offset=query.offset, limit=query.limit)
            filters.append("states")
            params.extend(states)
        if query.target is not None:
            filters.append("target")
            params.append(query.target)
        if query.created_after is not None:
            filters.append("created_after")
            params.append(to_db(query.created_after))
        if query.created_before is not None:
            filters.append("created_before")
            params.append(to_db(query.created_before))
        n_args = len(query.arguments or {})
        if query.arguments:
            filters.append("arguments")
            for key, value in query.arguments.items():
                kind, text = argument_filter(value)
                params.extend((key, kind, text))
        n_states = len(states or ())
        check_parameter_count(len(params) + 2, f"searching {self.names.label()}")
        listing = self.sql.search(filters, n_states, n_args)
        counting = self.sql.search_count(filters, n_states, n_args)

        def read(cur: pyodbc.Cursor, _: bool) -> tuple[list[Any], int]:
            rows = cur.execute(listing, *params, query.offset, query.limit).fetchall()
            if rows:
                return rows, int(rows[0][-1])
            found = cur.execute(counting, *params).fetchone()
            return rows, int(found[0]) if found else 0

        rows, total = self.database.run("searching jobs", read)
        return Page(
            jobs=[record_from(tuple(r)[:-1]) for r in rows],
            total=total,
            offset=query.offset,
            limit=query.limit,
        )

    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        statement = self.sql.counts(queue is not None)
        args = (queue,) if queue is not None else ()
        rows = self.database.run(
            "counting jobs", lambda cur, _: cur.execute(statement, *args).fetchall()
        )
        out: dict[str, dict[JobState, int]] = {}
        for q, state, n in rows:
            out.setdefault(q, {})[JobState(state)] = int(n)
        return out

    def cancel(self, job_id: uuid.UUID) -> bool:
        rows = self.database.run(
            f"cancelling job {job_id}",
            lambda cur, _: cur.execute(self.sql.cancel, job_id).fetchall(),
        )
        return len(rows) == 1

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        when = to_db(run_at) if run_at is not None else None
        return self.database.run(
            f"requeueing job {job_id}",
            lambda cur, _: requeue_unless_held(
                cur, self.names, self.sql.requeue, (when, when, job_id), job_id
            ),
        )

    def delete(self, job_id: uuid.UUID) -> bool:
        rows = self.database.run(
            f"deleting job {job_id}",
            lambda cur, _: cur.execute(self.sql.delete, job_id).fetchall(),
        )
        return len(rows) == 1

    def purge_finished(
        self, states: tuple[JobState, ...], older_than: datetime | None, queue: str | None
    ) -> int:
        """Delete finished jobs in batches of ``PURGE_BATCH``, each its own short transaction."""
        plan = purge_plan(self.sql, states, older_than, queue)
        if plan is None:
            return 0
        statement, args = plan
        total = 0
        while True:
            n = self.database.run(
                "purging jobs", lambda cur, _: len(cur.execute(statement, *args).fetchall())
            )
            total += n
            if n < PURGE_BATCH:
                return total


def purge_plan(
    sql: Statements, states: tuple[JobState, ...], older_than: datetime | None, queue: str | None
) -> tuple[str, list[Any]] | None:
    """One purge batch's statement and arguments (None: no state to purge)."""
    chosen = sorted({s.value for s in states})
    if not chosen:
        return None
    args: list[Any] = [to_db(older_than)] if older_than is not None else []
    if queue is not None:
        args.append(queue)
    return sql.purge(chosen, older_than is not None, queue is not None), args
