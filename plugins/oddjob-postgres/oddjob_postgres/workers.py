"""Worker announcements (table ``workers``) and finished jobs per minute, for the dashboard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import psycopg

from oddjob_core.history import FinishedHistory, MinuteCount
from oddjob_core.worker_registry import WorkerInfo, WorkerRegistry

from .database import Database
from .migrations import quote

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(WorkerInfo).decode


class PostgresAnnouncements(WorkerRegistry, FinishedHistory):
    """Mixed into ``PostgresStorage``: one row per live worker; per-minute counts by index.

    Expired rows are deleted by ``workers()`` in the same statement that reads
    the live ones. ``finished_per_minute`` walks ``jobs_finished``, a partial
    index on ``finished_at`` over succeeded and failed rows only (migration 3).
    """

    schema: str
    database: Database

    def announce(self, worker: WorkerInfo) -> None:
        table = f"{quote(self.schema)}.workers"
        statement = (
            f"INSERT INTO {table} (id, info, expires_at) VALUES (%s, %s::jsonb, %s) "
            "ON CONFLICT (id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at"
        )
        data = _encode(worker).decode()
        self.database.run(
            "announcing a worker",
            lambda c, _: c.execute(statement, (worker.id, data, worker.expires_at)),
        )

    def withdraw(self, worker_id: str) -> None:
        statement = f"DELETE FROM {quote(self.schema)}.workers WHERE id = %s"
        self.database.run("withdrawing a worker", lambda c, _: c.execute(statement, (worker_id,)))

    def workers(self) -> list[WorkerInfo]:
        table = f"{quote(self.schema)}.workers"

        def read(conn: psycopg.Connection[Any], _: bool) -> list[Any]:
            conn.execute(f"DELETE FROM {table} WHERE expires_at <= now()")
            return conn.execute(f"SELECT info FROM {table} WHERE expires_at > now()").fetchall()

        found = [_decode(bytes(row[0])) for row in self.database.run("listing workers", read)]
        return sorted(found, key=lambda w: (w.host, w.pid, w.id))

    def finished_per_minute(self, since: datetime, queue: str | None = None) -> list[MinuteCount]:
        statement = (
            "SELECT date_trunc('minute', finished_at) AS minute, "
            "count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed') "
            f"FROM {quote(self.schema)}.jobs "
            "WHERE state IN ('succeeded', 'failed') AND finished_at >= %(since)s "
            + ("AND queue = %(queue)s " if queue is not None else "")
            + "GROUP BY 1 ORDER BY 1"
        )
        rows = self.database.run(
            "counting finished jobs",
            lambda c, _: c.execute(statement, {"since": since, "queue": queue}).fetchall(),
        )
        return [MinuteCount(minute, int(ok), int(bad)) for minute, ok, bad in rows]
