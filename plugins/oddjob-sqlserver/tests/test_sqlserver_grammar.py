"""Every statement the plugin can send parses under a real T-SQL grammar (sqlfluff's ``tsql``).

No SQL Server runs here, so this is how a typo in a statement fails the
build: ``statements.catalog`` enumerates every statement (each variant of the
dynamic ones) and each is parsed with its ``?`` markers replaced by declared
variables. The migration DDL and the printed sqlcmd script are parsed too,
and a deliberately broken statement must be rejected (so the check can fail).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec
import pytest
import sqlfluff.core as sqlfluff_core
from oddjob_sqlserver.migrations import LATEST, MIGRATIONS, script
from oddjob_sqlserver.names import Names
from oddjob_sqlserver.statements import Entry, Statements, catalog, count_markers

VARIANTS = {
    "default": Names(),
    "custom schema and prefix": Names("jobs_here", "app1_"),
    "dbo, prefix starting with a digit": Names("dbo", "2nd_"),
}


@functools.cache
def linter() -> object:
    # the raw templater: statements are plain SQL (JSON paths hold braces jinja would eat)
    config = sqlfluff_core.FluffConfig(overrides={"dialect": "tsql", "templater": "raw"})
    return sqlfluff_core.Linter(config=config)


def with_variables(sql: str) -> str:
    """Replace each ``?`` marker (outside literals and [names]) by a declared @p variable."""
    out: list[str] = []
    count, i = 0, 0
    while i < len(sql):
        ch = sql[i]
        if ch in "'[":
            end = sql.index("'" if ch == "'" else "]", i + 1)
            out.append(sql[i : end + 1])
            i = end + 1
            continue
        if ch == "?":
            count += 1
            out.append(f"@p{count}")
        else:
            out.append(ch)
        i += 1
    declarations = "".join(f"DECLARE @p{k} nvarchar(max);\n" for k in range(1, count + 1))
    return declarations + "".join(out) + ";\n"


@functools.cache
def parse(sql: str) -> Any:
    """sqlfluff's parse of ``sql`` (cached: several tests look at the same statements)."""
    return linter().parse_string(sql)  # type: ignore[attr-defined]


def grammar_problems(sql: str) -> list[str]:
    """Unparsable sections and parse errors sqlfluff reports for ``sql`` (empty: it parses)."""
    parsed = parse(sql)
    problems = [str(v) for v in parsed.violations]
    if parsed.tree is None:
        return [*problems, "no parse tree"]
    problems += [
        f"unparsable: {seg.raw[:200]!r}" for seg in parsed.tree.recursive_crawl("unparsable")
    ]
    return problems


def test_a_broken_statement_is_rejected() -> None:
    broken = Statements(Names()).claim.replace("ORDER BY priority DESC", "ORDER priority DESC")
    assert grammar_problems(with_variables(broken))
    assert grammar_problems("UPDATE [oddjob].[jobs] SET WHERE id = @p1;")
    assert grammar_problems("SELECT TOP (1) FROM [oddjob].[jobs] WITH (UPDLOCK READPAST;")


def test_a_correct_statement_is_accepted() -> None:
    assert grammar_problems(with_variables(Statements(Names()).claim)) == []


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_statement_parses_as_tsql(variant: str) -> None:
    names = VARIANTS[variant]
    entries = list(catalog(names))
    assert len(entries) > 150  # every search/purge combination is in there
    failures = {
        e.name: problems for e in entries if (problems := grammar_problems(with_variables(e.sql)))
    }
    assert not failures, failures


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_printed_migration_script_parses_as_tsql(variant: str) -> None:
    text = script(VARIANTS[variant])
    assert grammar_problems(text) == []
    assert f"migrations 1..{LATEST}" in text


def test_printed_script_sets_the_options_filtered_indexes_need_before_any_ddl() -> None:
    """Classic sqlcmd runs with QUOTED_IDENTIFIER OFF: the first filtered index fails (Msg 1934)."""
    text = script(Names())
    first_create = text.index("CREATE")
    sets = text[:first_create]
    for option in ("QUOTED_IDENTIFIER", "ANSI_NULLS", "ANSI_PADDING", "ANSI_WARNINGS"):
        assert option in sets, option
    assert "SET NUMERIC_ROUNDABORT OFF;" in sets
    assert "sqlcmd -b -I " in text
    # the way the acceptance check reads it: GO lines blanked, one T-SQL text
    assert grammar_problems(text.replace("\nGO\n", "\n\n")) == []


def test_retention_sweep_batch_parses_as_tsql() -> None:
    from oddjob_sqlserver.retention import sweep_statement

    st = Statements(Names("jobs_here", "app1_"))
    sql = sweep_statement(st.purge(["failed"], True, True), "jobs_here:retention")
    assert grammar_problems(with_variables(sql)) == []


def test_catalog_names_every_statement_once_and_uses_only_validated_names() -> None:
    names = Names("jobs_here", "app1_")
    entries = list(catalog(names))
    assert len({e.name for e in entries}) == len(entries)
    for e in entries:
        if "jobs" in e.sql and e.name not in {"session_setup", "applock"}:
            assert "[jobs_here]" in e.sql or "jobs_here" in e.sql, e.name
        assert "[oddjob]" not in e.sql, e.name


def test_claim_statement_has_the_documented_shape() -> None:
    sql = Statements(Names()).claim
    assert "WITH (UPDLOCK, READPAST, ROWLOCK, FORCESEEK)" in sql
    assert "ORDER BY priority DESC, run_at, seq" in sql
    assert "token = NEWID()" in sql
    assert "deleted.lease_expires_at" in sql  # non-NULL: a recovered job
    assert count_markers(sql) == 6  # queue (promote), queue (recover), limit, queue, owner, lease


def test_every_statement_gets_as_many_parameters_as_it_has_markers(recorder: Any) -> None:
    """Drive every storage method against a recording connection: what it sends must fit."""
    from oddjob_sqlserver import SqlServerOptions, SqlServerStorage

    from oddjob_core.clock import utcnow
    from oddjob_core.errors import LeaseLost, StorageError
    from oddjob_core.model import AttemptError, Claim, JobQuery, JobState
    from oddjob_core.testing import make_envelope
    from oddjob_core.worker_registry import WorkerInfo

    sent = recorder.sent
    storage = SqlServerStorage(SqlServerOptions(migrate_on_start=False, retry_timeout=0.1))
    env = make_envelope("q")
    claim = Claim(job=env, token=str(uuid.uuid4()), owner="w", lease_expires_at=utcnow())
    error = AttemptError(attempt=1, type="builtins.RuntimeError", message="x", at=utcnow())
    later = utcnow() + timedelta(hours=1)
    worker = WorkerInfo(
        id="w", host="h", pid=1, queues={"q": 2}, in_flight=0,
        started_at=utcnow(), heartbeat_at=utcnow(), expires_at=later,
    )  # fmt: skip
    calls: list[Callable[[], object]] = [
        lambda: storage.add([env, make_envelope("q")]),
        lambda: storage.claim("q", 10, 30.0, "w"),
        lambda: storage.complete(claim, {"r": 1}),
        lambda: storage.complete_many([(claim, 1), (claim, None)]),
        lambda: storage.retry(claim, later, error),
        lambda: storage.fail(claim, error),
        lambda: storage.release([claim]),
        lambda: storage.extend([claim], 30.0),
        lambda: storage.next_due("q"),
        lambda: storage.get(env.id),
        lambda: storage.search(JobQuery()),
        lambda: storage.search(
            JobQuery(
                queue="q",
                states=(JobState.READY, JobState.FAILED),
                target="m:f",
                created_after=utcnow() - timedelta(days=1),
                created_before=utcnow(),
                arguments={"n": 1, "s": "x"},
                limit=5,
                offset=5,
            )
        ),
        lambda: storage.counts(),
        lambda: storage.counts("q"),
        lambda: storage.cancel(env.id),
        lambda: storage.requeue(env.id),
        lambda: storage.requeue(env.id, run_at=later),
        lambda: storage.delete(env.id),
        lambda: storage.announce(worker),
        lambda: storage.withdraw(worker.id),
        lambda: storage.workers(),
        lambda: storage.finished_per_minute(utcnow()),
        lambda: storage.finished_per_minute(utcnow(), "q"),
        lambda: storage.purge([JobState.SUCCEEDED]),
        lambda: storage.purge([JobState.FAILED, JobState.CANCELLED], older_than=later, queue="q"),
        lambda: storage.kv_read("schedule-paused/"),
        lambda: storage.kv_write({"schedule-paused/a": b"x", "schedule-paused/b": None}),
        lambda: storage.add_unique(msgspec.structs.replace(env, key="k")),
    ]
    try:
        for call in calls:
            try:
                call()
            except (LeaseLost, StorageError):
                pass  # the recording connection finds no row: a stale claim, no key holder
    finally:
        storage.close()
    assert len(sent) > len(calls)
    wrong = [
        (count_markers(sql), len(params), sql)
        for sql, params in sent
        if count_markers(sql) != len(params)
    ]
    assert wrong == [], "statements sent with a parameter count that does not fit"


def test_search_parameters_follow_the_filters() -> None:
    st = Statements(Names())
    sql = st.search(("queue", "states", "arguments"), n_states=3, n_arguments=2)
    # queue + 3 states + 2 x (key, type, value) + offset + limit
    assert Entry("s", sql).parameters == 1 + 3 + 6 + 2


def test_migration_ddl_clusters_on_seq_not_on_the_uuid() -> None:
    [ddl, unique_id, claim_index, *_] = MIGRATIONS[0].statements(Names())
    assert "PRIMARY KEY CLUSTERED (seq)" in ddl
    assert "seq              bigint IDENTITY(1, 1)" in ddl
    assert "datetime2(7)" in ddl
    assert "ISJSON(envelope) = 1" in ddl
    assert "UNIQUE NONCLUSTERED INDEX" in unique_id
    assert "IGNORE_DUP_KEY = ON" in unique_id
    assert "(queue, priority DESC, run_at, seq)" in claim_index
    assert "WHERE state IN (N'scheduled', N'ready', N'retrying', N'running')" in claim_index


def _jobs_columns() -> set[str]:
    """Column names declared by the migrations' CREATE TABLEs (jobs, workers)."""
    import re

    ddl = [s for m in MIGRATIONS for s in m.statements(Names())]
    tables = [s for s in ddl if s.startswith("CREATE TABLE")]
    added = {c for s in ddl for c in re.findall(r"^ALTER TABLE \S+ ADD (\w+) ", s)}
    return added | {
        column
        for ddl in tables
        for column in re.findall(
            r"^\s{4}(\w+)\s+(?:bigint|uniqueidentifier|nvarchar|int|datetime2|varbinary)", ddl, re.M
        )
    }


def test_every_column_a_statement_names_exists() -> None:
    """What the grammar cannot see: a misspelt column. Checked against the migration's DDL."""
    import re

    columns = _jobs_columns()
    assert {"seq", "id", "state", "token", "lease_expires_at", "envelope"} <= columns
    openjson = {"key", "value", "type"}  # OPENJSON's own columns
    bookkeeping = {"version", "name", "applied_at"}  # schema_migrations
    bookkeeping |= {"compatibility_level", "database_id"}  # sys.databases
    unknown: dict[str, set[str]] = {}
    for e in catalog(Names()):
        tree = parse(with_variables(e.sql)).tree
        names = {
            seg.raw.split(".")[-1].strip("[]") for seg in tree.recursive_crawl("column_reference")
        }
        names |= set(re.findall(r"\b(?:inserted|deleted)\.(\w+)", e.sql))
        bad = names - columns - openjson - bookkeeping
        if bad:
            unknown[e.name] = bad
    assert not unknown, unknown
    # and the check can fail:
    tree = parse("SELECT lease_expire_at FROM [oddjob].[jobs];").tree
    refs = {seg.raw for seg in tree.recursive_crawl("column_reference")}
    assert refs - columns == {"lease_expire_at"}


@pytest.mark.parametrize("name", ["DROP_NAMESPACE", "SERVER_SETTINGS"])
def test_doctor_statements_parse_as_tsql(name: str) -> None:
    from oddjob_sqlserver import doctor

    sql = getattr(doctor, name)
    assert grammar_problems(with_variables(sql)) == []


def _new_statements() -> dict[str, str]:
    """The statements #18 item 5 and #15 added: parsed one by one, so a failure names one."""
    from oddjob_sqlserver import claiming
    from oddjob_sqlserver.keyvalue import KeyValueStatements
    from oddjob_sqlserver.unique import UniqueStatements

    names = Names("jobs_here", "app1_")
    found = {
        "promote": claiming.promote(names),
        "recover": claiming.recover(names),
        "claim_ready": claiming.claim_ready(names),
        "claim batch": claiming.claim_batch(names),
    }
    found.update(KeyValueStatements(names).catalog())
    found.update(UniqueStatements(names, Statements(names).insert).catalog())
    for m in MIGRATIONS[2:]:
        for i, statement in enumerate(m.statements(names)):
            found[f"migration {m.version}[{i}]"] = statement
    return found


@pytest.mark.parametrize("name", list(_new_statements()))
def test_new_statements_parse_as_tsql(name: str) -> None:
    assert grammar_problems(with_variables(_new_statements()[name])) == []


def test_a_broken_merge_is_rejected() -> None:
    from oddjob_sqlserver.keyvalue import KeyValueStatements

    sql = KeyValueStatements(Names()).write.replace("WHEN MATCHED THEN", "WHEN MATCHED")
    assert grammar_problems(with_variables(sql))
