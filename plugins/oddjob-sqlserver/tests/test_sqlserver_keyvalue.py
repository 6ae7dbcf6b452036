"""Shared key/value state and unique keys on SQL Server (#15), tested without a server.

Statement shapes against the migration's DDL (the filtered unique index must
match the holder lookup literally, the MERGE must be serializable), and the
parameter encodings. The grammar of each statement is checked in
test_sqlserver_grammar.py; the behaviour by the conformance suite
(``RecurringSuite`` in test_sqlserver_conformance.py), live with
``ODDJOB_SQLSERVER_DSN``.
"""

from __future__ import annotations

import json
import re
import uuid

import pyodbc  # type: ignore[import-not-found,unused-ignore]
import pytest
from oddjob_sqlserver import SqlServerStorage
from oddjob_sqlserver.keyvalue import KeyValueStatements, like_prefix, write_document
from oddjob_sqlserver.migrations import MIGRATIONS
from oddjob_sqlserver.names import Names
from oddjob_sqlserver.statements import Statements, count_markers
from oddjob_sqlserver.unique import UniqueStatements, is_key_violation, requeue_unless_held

from oddjob_core.errors import KeyHeld
from oddjob_core.keyvalue import KeyValueStore
from oddjob_core.unique import MAX_KEY, UniqueKeys

NAMES = Names("jobs_here", "app1_")


def _migration_4() -> list[str]:
    return list(next(m for m in MIGRATIONS if m.version == 4).statements(NAMES))


def test_the_storage_offers_both_interfaces() -> None:
    assert issubclass(SqlServerStorage, KeyValueStore)
    assert issubclass(SqlServerStorage, UniqueKeys)


@pytest.mark.parametrize(
    ("prefix", "pattern"),
    [
        ("", "%"),
        ("schedule-paused/", "schedule-paused/%"),
        ("a_b/", "a!_b/%"),  # '_' is LIKE's one-character wildcard
        ("x%[!", "x!%![!!%"),
    ],
)
def test_read_prefixes_are_escaped_like_patterns(prefix: str, pattern: str) -> None:
    assert like_prefix(prefix) == pattern
    assert "ESCAPE N'!'" in KeyValueStatements(NAMES).read


def test_values_travel_as_hex_and_none_deletes() -> None:
    doc = json.loads(write_document({"a/b": b"\x00\xffok", "a/c": None, "a/d": b""}))
    assert doc == [{"k": "a/b", "v": "00ff6f6b"}, {"k": "a/c", "v": None}, {"k": "a/d", "v": ""}]
    with pytest.raises(ValueError):
        write_document({"bad key": b"x"})


def test_the_upsert_is_one_serializable_merge() -> None:
    sql = KeyValueStatements(NAMES).write
    assert sql.startswith("MERGE [jobs_here].[app1_kv] WITH (HOLDLOCK) AS t")
    assert "WHEN MATCHED AND s.value IS NULL THEN DELETE" in sql
    assert "CONVERT(varbinary(max), j.value, 2)" in sql  # hex, style 2: no 0x prefix
    assert "COLLATE Latin1_General_100_BIN2 AS name" in sql  # no collation conflict in ON
    assert sql.endswith(";")  # MERGE must be terminated
    assert count_markers(sql) == 1


def test_kv_table_holds_what_the_statements_use() -> None:
    [table] = [s for s in _migration_4() if s.startswith("CREATE TABLE")]
    assert "[jobs_here].[app1_kv]" in table
    assert "name       nvarchar(200) COLLATE Latin1_General_100_BIN2 NOT NULL" in table
    assert "value      varbinary(max) NOT NULL" in table
    assert "PRIMARY KEY CLUSTERED (name)" in table


def test_unique_index_filter_is_what_the_holder_lookup_says() -> None:
    [index] = [s for s in _migration_4() if "UNIQUE NONCLUSTERED INDEX" in s]
    filter_ = index.split("WHERE ", 1)[1].strip()
    assert "ON [jobs_here].[app1_jobs] (queue, unique_key)" in index
    sql = UniqueStatements(NAMES, Statements(NAMES).insert).add_unique
    lookups = re.findall(r"SELECT @holder = id FROM .*?\n.*?\n.*?;", sql)
    assert len(lookups) == 2
    for lookup in lookups:
        assert "WITH (UPDLOCK, HOLDLOCK, INDEX([UX_app1_jobs_unique_key]))" in lookup
        assert "WHERE queue = @queue AND unique_key = @key" in lookup
        assert f"AND {filter_};" in lookup  # literally: the filtered index may be hinted


def test_add_unique_is_one_transaction_in_one_batch() -> None:
    sql = UniqueStatements(NAMES, Statements(NAMES).insert).add_unique
    assert sql.index("BEGIN TRANSACTION;") < sql.index("SELECT @holder")
    assert sql.index("IF @holder IS NULL") < sql.index("INSERT INTO") < sql.index("COMMIT")
    assert sql.rstrip().endswith("SELECT @holder AS holder")
    assert count_markers(sql) == 3  # document (declared nvarchar(max): it comes first), queue, key
    assert sql.startswith("DECLARE @document nvarchar(max) = ?, @queue")
    assert "@key nvarchar(200) = ?" in sql
    assert MAX_KEY == 200


def test_the_insert_fills_the_unique_key_column() -> None:
    sql = Statements(NAMES).insert
    assert "unique_key nvarchar(200)    '$.e.key'" in sql
    assert sql.split("SELECT")[0].rstrip().endswith("unique_key)")
    [alter] = [s for s in _migration_4() if s.startswith("ALTER TABLE")]
    assert alter.endswith("ADD unique_key nvarchar(200) COLLATE Latin1_General_100_BIN2 NULL")


#: what SQL Server says when an UPDATE would make a second live job hold a key
VIOLATION = (
    "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Cannot insert duplicate key row in "
    "object 'jobs_here.app1_jobs' with unique index 'UX_app1_jobs_unique_key'. The duplicate "
    "key value is (q, invoice-42). (2601) (SQLExecDirectW)"
)


def test_only_the_unique_key_index_means_the_key_is_held() -> None:
    assert is_key_violation(pyodbc.IntegrityError("23000", VIOLATION), NAMES)
    other_index = VIOLATION.replace("UX_app1_jobs_unique_key", "UX_app1_jobs_id")
    assert not is_key_violation(pyodbc.IntegrityError("23000", other_index), NAMES)
    assert not is_key_violation(pyodbc.IntegrityError("23000", VIOLATION), Names("jobs_here"))


class _RefusingCursor:
    """Answers as the driver would: the requeue fails on the index, the lookup finds the holder.

    A stand-in for two driver replies, to test the control flow around them; what the
    server does is the conformance suite's (test_requeue_of_a_keyed_job..., live).
    """

    def __init__(self, holder: tuple[str, str, uuid.UUID] | None) -> None:
        self.holder = holder
        self.sent: list[str] = []

    def execute(self, sql: str, *params: object) -> _RefusingCursor:
        self.sent.append(sql)
        if sql.startswith("UPDATE"):
            raise pyodbc.IntegrityError("23000", VIOLATION)
        return self

    def fetchone(self) -> tuple[str, str, uuid.UUID] | None:
        return self.holder


def test_a_requeue_refused_by_the_key_index_names_the_holder() -> None:
    holder = uuid.uuid4()
    job = uuid.uuid4()
    cursor = _RefusingCursor(("q", "invoice-42", holder))
    requeue = Statements(NAMES).requeue
    with pytest.raises(KeyHeld) as refused:
        requeue_unless_held(cursor, NAMES, requeue, (None, None, job), job)
    assert refused.value.holder == holder
    assert cursor.sent == [requeue, UniqueStatements(NAMES, "?").key_holder]


def test_key_holder_lookup_reads_live_rows_of_the_same_key_only() -> None:
    sql = UniqueStatements(NAMES, "?").key_holder
    assert "h.queue = j.queue AND h.unique_key = j.unique_key AND h.id <> j.id" in sql
    assert "h.unique_key IS NOT NULL AND h.state IN (N'scheduled', N'ready'" in sql
    assert count_markers(sql) == 1
