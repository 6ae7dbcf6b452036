"""Claims read ready rows only (#18 item 5): statement shapes against the migrations' indexes.

No server runs here, so what a plan would do is checked where it is decided:
each statement of the claim batch must carry the index's filter predicate
literally (SQL Server only matches a filtered index to literal predicates that
imply its filter), be pinned to a seek, skip locked rows and be bounded; the
ORDER BY of the claim must be the ready index's key order (no sort). The T-SQL
grammar of every statement is checked in test_sqlserver_grammar.py; the
behaviour (promotion, recovery, priority/FIFO) by the live suites with
``ODDJOB_SQLSERVER_DSN``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from oddjob_sqlserver import SqlServerOptions, SqlServerStorage
from oddjob_sqlserver.claiming import (
    CLAIM_PARAMETERS,
    PROMOTE_BATCH,
    claim_parameters,
    claim_ready,
    output_rows,
    promote,
    recover,
)
from oddjob_sqlserver.migrations import LATEST, MIGRATIONS, script
from oddjob_sqlserver.names import Names
from oddjob_sqlserver.statements import Statements, count_markers

NAMES = Names("jobs_here", "app1_")
HINTS = "WITH (UPDLOCK, READPAST, ROWLOCK, FORCESEEK)"


def indexes_after_all_migrations(names: Names) -> dict[str, str]:
    """Index name -> its CREATE statement, after every migration (dropped ones removed)."""
    found: dict[str, str] = {}
    for m in MIGRATIONS:
        for statement in m.statements(names):
            created = re.match(r"CREATE (?:UNIQUE )?NONCLUSTERED INDEX \[(\w+)\]", statement)
            dropped = re.match(r"DROP INDEX \[(\w+)\]", statement)
            if created:
                found[created.group(1)] = statement
            elif dropped:
                del found[dropped.group(1)]
    return found


def index_filter(names: Names, suffix: str) -> str:
    ddl = indexes_after_all_migrations(names)[f"IX_{names.prefix}jobs_{suffix}"]
    return ddl.split("WHERE ", 1)[1].strip()


def test_the_old_claim_index_over_running_and_scheduled_rows_is_gone() -> None:
    indexes = indexes_after_all_migrations(NAMES)
    assert "IX_app1_jobs_claim" not in indexes
    assert index_filter(NAMES, "ready") == "state = N'ready'"
    assert index_filter(NAMES, "pending") == "state IN (N'scheduled', N'retrying')"
    assert index_filter(NAMES, "leases") == "state = N'running'"


@pytest.mark.parametrize(
    ("build", "index", "key"),
    [
        (promote, "pending", "(queue, run_at)"),
        (recover, "leases", "(queue, lease_expires_at)"),
        (claim_ready, "ready", "(queue, priority DESC, run_at, seq)"),
    ],
)
def test_each_statement_seeks_its_own_filtered_index(build: Any, index: str, key: str) -> None:
    sql = build(NAMES)
    ddl = indexes_after_all_migrations(NAMES)[f"IX_app1_jobs_{index}"]
    assert f"ON [jobs_here].[app1_jobs] {key}" in ddl
    assert f"AND {index_filter(NAMES, index)}" in sql  # literally: the filtered index matches
    assert HINTS in sql  # a seek, skipping rows other claimers hold
    assert sql.count("WHERE queue = ?") == 1  # the index's leading column
    assert "TOP (" in sql


def test_promotion_and_recovery_are_bounded_and_earliest_first() -> None:
    assert f"TOP ({PROMOTE_BATCH})" in promote(NAMES)
    assert promote(NAMES).rstrip().endswith("SET state = N'ready', updated_at = SYSUTCDATETIME()")
    assert "ORDER BY run_at\n" in promote(NAMES)
    assert f"TOP ({PROMOTE_BATCH})" in recover(NAMES)
    assert "ORDER BY lease_expires_at\n" in recover(NAMES)
    assert "run_at <= SYSUTCDATETIME()" in promote(NAMES)
    assert "lease_expires_at <= SYSUTCDATETIME()" in recover(NAMES)
    # recovery keeps the expired lease: that is how the claim knows the job was recovered
    assert "lease_expires_at =" not in recover(NAMES)


def test_claim_order_is_the_ready_index_order_priority_then_fifo() -> None:
    sql = claim_ready(NAMES)
    assert "ORDER BY priority DESC, run_at, seq" in sql
    assert "state = N'ready'" in sql
    assert "N'running'" in sql.split("UPDATE due")[1]
    assert count_markers(sql) == 4  # limit, queue, owner, lease ms
    assert sql.rstrip().endswith("deleted.lease_expires_at")


def test_the_batch_is_one_round_trip_with_parameters_in_order() -> None:
    sql = Statements(NAMES).claim
    assert sql == ";\n".join((promote(NAMES), recover(NAMES), claim_ready(NAMES)))
    assert count_markers(sql) == len(CLAIM_PARAMETERS) == 6
    assert claim_parameters("q", 7, "w", 30000) == ("q", "q", 7, "q", "w", 30000)


def test_every_other_way_into_ready_clears_the_lease() -> None:
    """A non-NULL lease on a ready row means 'recovered': nothing else may leave one."""
    st = Statements(NAMES)
    assert "lease_expires_at = NULL" in st.release
    assert "lease_expires_at = NULL" in st.requeue
    assert "lease_expires_at = NULL" in st.cancel  # a cancelled recovered row, requeued later
    assert "lease_expires_at = NULL" in st.retry  # retrying rows are promoted later
    assert "lease_expires_at" not in st.insert


class _Results:
    """Row counts of the first two statements, then the OUTPUT rows (as pyodbc yields them)."""

    def __init__(self) -> None:
        self.sets: list[Any] = [None, None, [("row",)]]
        self.description: Any = None

    def nextset(self) -> bool:
        self.sets.pop(0)
        self.description = [("c",)] if self.sets and self.sets[0] is not None else None
        return bool(self.sets)

    def fetchall(self) -> list[Any]:
        return list(self.sets[0])


def test_the_claimed_rows_are_read_past_the_row_counts() -> None:
    assert output_rows(_Results()) == [("row",)]


def test_an_installation_at_migration_2_is_upgraded(recorder: Any) -> None:
    """Upgrade from the previous schema: migrations 3 and 4 run, in order, in one transaction."""
    recorder.applied = [1, 2]
    storage = SqlServerStorage(SqlServerOptions(retry_timeout=0.1))
    storage.close()
    ran = [e.sql for e in recorder.executed()]
    expected = [s for m in MIGRATIONS if m.version > 2 for s in m.statements(Names())]
    assert [s for s in ran if s in expected] == expected
    assert not [s for m in MIGRATIONS[:2] for s in m.statements(Names()) if s in ran]
    assert LATEST == 4
    migrating = [e for e in recorder.executed() if e.sql in expected]
    assert all(not e.autocommit for e in migrating)  # one transaction
    assert ("commit", False) in recorder.events


def test_the_printed_script_upgrades_from_any_version() -> None:
    text = script(NAMES)
    for m in MIGRATIONS:
        guard = f"WHERE version = {m.version})"
        assert guard in text
    # migration 4 adds a column and indexes it in one guarded batch: each statement is
    # compiled when it runs (EXEC), not when the batch is
    batch4 = text.split("-- migration 4")[1]
    assert "EXEC (N'ALTER TABLE [jobs_here].[app1_jobs] ADD unique_key" in batch4
    assert "EXEC (N'CREATE UNIQUE NONCLUSTERED INDEX" in batch4
