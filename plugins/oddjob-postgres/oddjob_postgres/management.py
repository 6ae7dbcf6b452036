"""Management of the PostgreSQL store: get, search, counts, cancel, requeue, purge, delete."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from oddjob_core.errors import KeyHeld
from oddjob_core.model import JobQuery, JobRecord, JobState, Page
from oddjob_core.storage import JobManagement

from .database import Database
from .rows import RECORD_COLUMNS, encode, record_from
from .statements import Statements

_PURGE_BATCH = 5000
_KEY_HOLDER = """
SELECT j.queue, j.envelope->>'key', h.id FROM {t} j JOIN {t} h
  ON h.queue = j.queue AND h.envelope->>'key' = j.envelope->>'key' AND h.id <> j.id
WHERE j.id = %(id)s AND h.state IN ('scheduled', 'ready', 'retrying', 'running')
"""


@dataclass
class Management(JobManagement):
    """Management statements on one schema's jobs table."""

    database: Database
    sql: Statements
    channel: str  # the NOTIFY channel a requeued job wakes workers on

    def get(self, job_id: uuid.UUID) -> JobRecord | None:
        query = f"SELECT {RECORD_COLUMNS} FROM {self.sql.table} WHERE id = %s"
        row = self.database.run(
            f"reading job {job_id}", lambda c, _: c.execute(query, (job_id,)).fetchone()
        )
        return record_from(row) if row else None

    def search(self, query: JobQuery) -> Page:
        # The page and its total are two statements: a window count (count(*) OVER ())
        # made PostgreSQL read every matching row's columns before the LIMIT, 6 s for
        # the first page of a million jobs; the page alone walks the primary key.
        where, params = _search_filter(query)
        params.update(limit=query.limit, offset=query.offset)
        listing = (
            f"SELECT {RECORD_COLUMNS} FROM {self.sql.table} {where} "
            "ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s"
        )
        counting = f"SELECT count(*) FROM {self.sql.table} {where}"

        def read(conn: psycopg.Connection[Any], _: bool) -> tuple[list[Any], int]:
            with conn.transaction():  # one snapshot for the page and its total
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                rows = conn.execute(listing, params).fetchall()
                if len(rows) < query.limit and (rows or query.offset == 0):
                    return rows, query.offset + len(rows)  # the last page: no count needed
                found = conn.execute(counting, params).fetchone()
                return rows, int(found[0]) if found else 0

        rows, total = self.database.run("searching jobs", read)
        return Page(
            jobs=[record_from(r) for r in rows],
            total=total,
            offset=query.offset,
            limit=query.limit,
        )

    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        query = f"SELECT queue, state, count(*) FROM {self.sql.table}"
        if queue is not None:
            query += " WHERE queue = %(queue)s"
        query += " GROUP BY queue, state"
        rows = self.database.run(
            "counting jobs", lambda c, _: c.execute(query, {"queue": queue}).fetchall()
        )
        out: dict[str, dict[JobState, int]] = {}
        for q, state, n in rows:
            out.setdefault(q, {})[JobState(state)] = int(n)
        return out

    def cancel(self, job_id: uuid.UUID) -> bool:
        changed = self.database.run(
            f"cancelling job {job_id}",
            lambda c, _: c.execute(self.sql.cancel, {"id": job_id}).rowcount,
        )
        return changed == 1

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        params = {"id": job_id, "run_at": run_at, "channel": self.channel}
        holder_of = _KEY_HOLDER.replace("{t}", self.sql.table)

        def write(c: psycopg.Connection[Any], _: bool) -> Any:
            try:
                return c.execute(self.sql.requeue, params).fetchone()
            except psycopg.errors.UniqueViolation:  # jobs_unique_key: another live job has the key
                return c.execute(holder_of, {"id": job_id}).fetchone() or (0,)

        for _ in range(3):
            row = self.database.run(f"requeueing job {job_id}", write)
            if row is not None and len(row) == 3:
                raise KeyHeld(job_id, row[1], row[0], row[2])
            if row != (0,):  # (0,): the holder finished between the two statements, again
                return bool(row and row[0])
        return False

    def delete(self, job_id: uuid.UUID) -> bool:
        deleted = self.database.run(
            f"deleting job {job_id}",
            lambda c, _: c.execute(self.sql.delete, {"id": job_id}).rowcount,
        )
        return deleted == 1

    def purge_finished(
        self, states: tuple[JobState, ...], older_than: datetime | None, queue: str | None
    ) -> int:
        """Delete finished jobs in batches, so a large purge never holds one long lock."""
        chosen = [s.value for s in states]
        conds = ["state = ANY(%(states)s::text[])"]
        if older_than is not None:
            conds.append("updated_at < %(older_than)s")
        if queue is not None:
            conds.append("queue = %(queue)s")
        statement = (
            f"DELETE FROM {self.sql.table} WHERE id IN (SELECT id FROM {self.sql.table} "
            f"WHERE {' AND '.join(conds)} LIMIT {_PURGE_BATCH})"
        )
        params = {"states": chosen, "older_than": older_than, "queue": queue}
        total = 0
        while True:
            n = self.database.run(
                "purging jobs", lambda c, _: c.execute(statement, params).rowcount
            )
            total += n
            if n < _PURGE_BATCH:
                return total


def _search_filter(query: JobQuery) -> tuple[str, dict[str, Any]]:
    conds: list[str] = []
    params: dict[str, Any] = {}
    if query.queue is not None:
        conds.append("queue = %(queue)s")
        params["queue"] = query.queue
    if query.states is not None:
        conds.append("state = ANY(%(states)s::text[])")
        params["states"] = [JobState(s).value for s in query.states]
    if query.target is not None:
        conds.append("target = %(target)s")
        params["target"] = query.target
    if query.created_after is not None:
        conds.append("created_at >= %(after)s")
        params["after"] = query.created_after
    if query.created_before is not None:
        conds.append("created_at < %(before)s")
        params["before"] = query.created_before
    if query.arguments:
        # containment can use a GIN index on (envelope->'arguments'); the per-key
        # equality keeps the semantics exact (containment would match sub-arrays)
        conds.append("envelope->'arguments' @> %(args)s::jsonb")
        params["args"] = encode(query.arguments)
        for i, (key, value) in enumerate(query.arguments.items()):
            conds.append(f"envelope->'arguments'->%(k{i})s = %(v{i})s::jsonb")
            params[f"k{i}"] = key
            params[f"v{i}"] = encode(value)
    return ("WHERE " + " AND ".join(conds)) if conds else "", params
