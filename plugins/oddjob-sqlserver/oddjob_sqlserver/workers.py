"""Worker announcements (table ``<prefix>workers``) and finished jobs per minute, for the dashboard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from oddjob_core.history import FinishedHistory, MinuteCount
from oddjob_core.worker_registry import WorkerInfo, WorkerRegistry

from .database import Database
from .names import Names
from .rows import from_db, to_db

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(WorkerInfo).decode
_MINUTE = "DATEADD(minute, DATEDIFF(minute, 0, finished_at), 0)"


def workers_table(names: Names) -> str:
    """``[schema].[<prefix>workers]``."""
    return f"[{names.schema}].[{names.prefix}workers]"


@dataclass(frozen=True)
class WorkerStatements:
    """The T-SQL of announcements and per-minute counts for one installation."""

    names: Names

    @property
    def announce(self) -> str:
        """Update the worker's row, or insert it (params: info, expires, id, id, info, expires)."""
        t = workers_table(self.names)
        return (
            f"UPDATE {t} SET info = ?, expires_at = ? WHERE id = ?;\n"
            f"IF @@ROWCOUNT = 0 INSERT INTO {t} (id, info, expires_at) VALUES (?, ?, ?)"
        )

    @property
    def withdraw(self) -> str:
        return f"DELETE FROM {workers_table(self.names)} WHERE id = ?"

    @property
    def expire(self) -> str:
        return f"DELETE FROM {workers_table(self.names)} WHERE expires_at <= SYSUTCDATETIME()"

    @property
    def live(self) -> str:
        return f"SELECT info FROM {workers_table(self.names)} WHERE expires_at > SYSUTCDATETIME()"

    def finished(self, by_queue: bool) -> str:
        """Succeeded and failed per minute since ? (and for queue ?), oldest minute first."""
        return (
            f"SELECT {_MINUTE} AS minute, "
            "SUM(CASE WHEN state = N'succeeded' THEN 1 ELSE 0 END) AS succeeded, "
            "SUM(CASE WHEN state = N'failed' THEN 1 ELSE 0 END) AS failed "
            f"FROM {self.names.jobs} "
            "WHERE state IN (N'succeeded', N'failed') AND finished_at >= ?"
            + (" AND queue = ?" if by_queue else "")
            + f" GROUP BY {_MINUTE} ORDER BY {_MINUTE}"
        )

    def catalog(self) -> Iterator[tuple[str, str]]:
        """``(name, sql)`` of every statement above, for the grammar test's catalog."""
        yield "workers.announce", self.announce
        yield "workers.withdraw", self.withdraw
        yield "workers.expire", self.expire
        yield "workers.live", self.live
        for by_queue in (False, True):
            yield f"workers.finished(by_queue={by_queue})", self.finished(by_queue)


class SqlServerAnnouncements(WorkerRegistry, FinishedHistory):
    """Mixed into ``SqlServerStorage`` (migration 2 creates the table and the index)."""

    names: Names
    database: Database

    @property
    def _announcements(self) -> WorkerStatements:
        return WorkerStatements(self.names)

    def announce(self, worker: WorkerInfo) -> None:
        info, expires = _encode(worker).decode(), to_db(worker.expires_at)
        self.database.run(
            "announcing a worker",
            lambda cur, _: cur.execute(
                self._announcements.announce, info, expires, worker.id, worker.id, info, expires
            ),
        )

    def withdraw(self, worker_id: str) -> None:
        self.database.run(
            "withdrawing a worker",
            lambda cur, _: cur.execute(self._announcements.withdraw, worker_id),
        )

    def workers(self) -> list[WorkerInfo]:
        st = self._announcements

        def read(cur: Any, _: bool) -> list[Any]:
            cur.execute(st.expire)
            return list(cur.execute(st.live).fetchall())

        found = [_decode(str(row[0])) for row in self.database.run("listing workers", read)]
        return sorted(found, key=lambda w: (w.host, w.pid, w.id))

    def finished_per_minute(self, since: datetime, queue: str | None = None) -> list[MinuteCount]:
        statement = self._announcements.finished(queue is not None)
        args = (to_db(since), queue) if queue is not None else (to_db(since),)
        rows = self.database.run(
            "counting finished jobs", lambda cur, _: cur.execute(statement, *args).fetchall()
        )
        out = []
        for minute, ok, bad in rows:
            at = from_db(minute)
            assert at is not None
            out.append(MinuteCount(at, int(ok), int(bad)))
        return out
