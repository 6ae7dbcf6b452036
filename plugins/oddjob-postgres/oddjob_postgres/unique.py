"""The postgres store's unique keys: a unique partial index over waiting and running jobs.

Migration 3 adds ``jobs_unique_key`` on ``(queue, envelope->>'key')`` for rows
in a waiting or running state, so the database itself refuses a second live
job with a key; a finished job leaves the index and frees its key. ``add_unique``
inserts with ``ON CONFLICT DO NOTHING``, then reads the key's holder (two statements: the holder may have been
committed by another session after the insert's snapshot).
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from oddjob_core.errors import StorageError
from oddjob_core.model import Envelope
from oddjob_core.unique import UniqueKeys

from .database import Database
from .rows import insert_document

_HOLDER = """
SELECT id FROM {s}.jobs
WHERE queue = %(queue)s AND envelope->>'key' = %(key)s
  AND state IN ('scheduled', 'ready', 'retrying', 'running')
"""


class PostgresUniqueKeys(UniqueKeys):
    """Mixed into ``PostgresStorage``; call ``_unique_init`` from its constructor."""

    _unique_db: Database
    _unique_insert: str
    _unique_holder: str
    _unique_channel: str

    def _unique_init(self, db: Database, quoted_schema: str, insert: str, channel: str) -> None:
        self._unique_db = db
        # the batch insert skips a stored id; this one skips any conflict, a held key too
        self._unique_insert = insert.replace(
            "ON CONFLICT (id) DO NOTHING", "ON CONFLICT DO NOTHING"
        )
        if self._unique_insert == insert:
            raise RuntimeError("the insert statement changed: update oddjob_postgres.unique")
        self._unique_holder = _HOLDER.replace("{s}", quoted_schema).strip()
        self._unique_channel = channel

    def add_unique(self, job: Envelope) -> uuid.UUID:
        if job.key is None:
            raise ValueError("add_unique needs a job with a key")
        params = {"envelopes": insert_document([job]), "channel": self._unique_channel}
        where = {"queue": job.queue, "key": job.key}

        def write(conn: psycopg.Connection[Any], _: bool) -> uuid.UUID | None:
            conn.execute(self._unique_insert, params)  # skips the job if the key is held
            row = conn.execute(self._unique_holder, where).fetchone()
            return row[0] if row else None

        for _ in range(5):  # None: the holder finished between the two statements
            holder = self._unique_db.run(f"adding job {job.id} with key {job.key!r}", write)
            if holder is not None:
                return holder
        raise StorageError(f"could not take unique key {job.key!r} of queue '{job.queue}'")
