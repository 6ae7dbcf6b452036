"""The SQL Server store's shared key/value table (``<prefix>kv``, migration 4): schedule state.

``kv_write`` is one MERGE (one statement, so atomic, one round trip in
autocommit mode) taking a JSON array of ``{"k": name, "v": hex or null}``:
null deletes the key, anything else inserts or replaces it. ``HOLDLOCK``
makes MERGE's match-then-insert serializable, so two workers writing one new
key at once cannot both insert it (a primary-key violation) — the upsert
pattern SQL Server needs. Values travel as hex text (``CONVERT(varbinary(max),
v, 2)``), since JSON holds no bytes. ``kv_read`` seeks the primary key with a
``LIKE`` on the escaped prefix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from oddjob_core.keyvalue import KeyValueStore, check_key

from .migrations import BIN
from .names import Names
from .parameters import declare_document_parameter

if TYPE_CHECKING:
    from .database import Database

_encode = msgspec.json.Encoder().encode
#: the LIKE escape character of ``kv_read``
ESCAPE = "!"


def like_prefix(prefix: str) -> str:
    """``prefix`` as a LIKE pattern matching every text that starts with it."""
    for ch in (ESCAPE, "%", "_", "["):
        prefix = prefix.replace(ch, ESCAPE + ch)
    return prefix + "%"


def write_document(items: Mapping[str, bytes | None]) -> str:
    """The one parameter of ``KeyValueStatements.write``."""
    return _encode(
        [{"k": check_key(k), "v": None if v is None else bytes(v).hex()} for k, v in items.items()]
    ).decode()


@dataclass(frozen=True)
class KeyValueStatements:
    """The T-SQL of the key/value table of one installation."""

    names: Names

    @property
    def read(self) -> str:
        """Every key starting with a prefix; parameter: the ``like_prefix`` pattern."""
        return f"SELECT name, value FROM {self.names.kv} WHERE name LIKE ? ESCAPE N'{ESCAPE}'"

    @property
    def write(self) -> str:
        """Upsert and delete in one MERGE; parameter: ``write_document``."""
        return f"""
MERGE {self.names.kv} WITH (HOLDLOCK) AS t
USING (
    SELECT j.name COLLATE {BIN} AS name, CONVERT(varbinary(max), j.value, 2) AS value
    FROM OPENJSON(CONVERT(nvarchar(max), ?)) WITH (name nvarchar(200) '$.k', value varchar(max) '$.v') AS j
) AS s
ON t.name = s.name
WHEN MATCHED AND s.value IS NULL THEN DELETE
WHEN MATCHED THEN UPDATE SET value = s.value, updated_at = SYSUTCDATETIME()
WHEN NOT MATCHED BY TARGET AND s.value IS NOT NULL THEN
    INSERT (name, value, updated_at) VALUES (s.name, s.value, SYSUTCDATETIME());
""".strip()

    def catalog(self) -> Iterator[tuple[str, str]]:
        """``(name, sql)`` of every statement above, for the grammar test's catalog."""
        yield "kv.read", self.read
        yield "kv.write", self.write


class SqlServerKeyValue(KeyValueStore):
    """Mixed into ``SqlServerStorage``."""

    names: Names
    database: Database

    def kv_read(self, prefix: str) -> dict[str, bytes]:
        statement, pattern = KeyValueStatements(self.names).read, like_prefix(prefix)

        def read(cur: Any, _: bool) -> dict[str, bytes]:
            return {str(k): bytes(v) for k, v in cur.execute(statement, pattern).fetchall()}

        return self.database.run("reading shared state", read)

    def kv_write(self, items: Mapping[str, bytes | None]) -> None:
        if not items:
            return
        statement, document = KeyValueStatements(self.names).write, write_document(items)

        def write(cur: Any, _: bool) -> None:
            declare_document_parameter(cur)
            cur.execute(statement, document)

        self.database.run("writing shared state", write)


__all__ = ["KeyValueStatements", "SqlServerKeyValue", "like_prefix", "write_document"]
