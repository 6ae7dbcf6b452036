"""The postgres store's shared key/value table (``{schema}.kv``, migration 4): schedule state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from oddjob_core.keyvalue import KeyValueStore, check_key

from .database import Database

_READ = "SELECT key, value FROM {s}.kv WHERE starts_with(key, %s)"
_UPSERT = """
INSERT INTO {s}.kv (key, value, updated_at)
SELECT k, v, now() FROM unnest(%s::text[], %s::bytea[]) AS t(k, v)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
"""
_DELETE = "DELETE FROM {s}.kv WHERE key = ANY(%s::text[])"


class PostgresKeyValue(KeyValueStore):
    """Mixed into ``PostgresStorage``; call ``_kv_init`` from its constructor."""

    _kv_db: Database
    _kv_sql: tuple[str, str, str]

    def _kv_init(self, db: Database, quoted_schema: str) -> None:
        self._kv_db = db
        self._kv_sql = tuple(  # type: ignore[assignment]
            q.replace("{s}", quoted_schema).strip() for q in (_READ, _UPSERT, _DELETE)
        )

    def kv_read(self, prefix: str) -> dict[str, bytes]:
        def read(conn: psycopg.Connection[Any], _: bool) -> dict[str, bytes]:
            rows = conn.execute(self._kv_sql[0], (prefix,)).fetchall()
            return {str(k): bytes(v) for k, v in rows}

        return self._kv_db.run("reading shared state", read)

    def kv_write(self, items: Mapping[str, bytes | None]) -> None:
        puts = {check_key(k): bytes(v) for k, v in items.items() if v is not None}
        deletes = [check_key(k) for k, v in items.items() if v is None]

        def write(conn: psycopg.Connection[Any], _: bool) -> None:
            with conn.transaction():
                if puts:
                    conn.execute(self._kv_sql[1], (list(puts), list(puts.values())))
                if deletes:
                    conn.execute(self._kv_sql[2], (deletes,))

        if puts or deletes:
            self._kv_db.run("writing shared state", write)
