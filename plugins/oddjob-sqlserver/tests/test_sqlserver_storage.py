"""Behaviour specific to SQL Server storage, against a live server (needs ODDJOB_SQLSERVER_DSN)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from oddjob_sqlserver import SqlServerOptions, SqlServerStorage, add_in_transaction
from oddjob_sqlserver.migrations import LATEST

from oddjob_core.clock import utcnow
from oddjob_core.errors import ConfigError, LeaseLost, StorageError
from oddjob_core.model import JobQuery, JobState
from oddjob_core.testing import make_envelope

LEASE = 30.0


def test_transactional_add_commits_with_the_callers_data(storage: SqlServerStorage) -> None:
    env = make_envelope("tx")
    with storage.connection() as conn:
        conn.execute("CREATE TABLE #orders (id int)")
        conn.execute("INSERT INTO #orders VALUES (42)")
        storage.add([env], connection=conn)
        # workers neither see nor wait for the uncommitted job (READPAST skips its locked row)
        assert storage.claim("tx", 10, LEASE, "w") == []
        conn.commit()
    record = storage.get(env.id)
    assert record is not None
    assert record.state is JobState.READY


def test_transactional_add_rolls_back_with_the_callers_data(storage: SqlServerStorage) -> None:
    env = make_envelope("tx")
    with storage.connection() as conn:
        add_in_transaction(conn, [env], schema=storage.names.schema)
        conn.rollback()
    assert storage.get(env.id) is None
    assert storage.claim("tx", 10, LEASE, "w") == []


def test_add_in_transaction_refuses_an_autocommit_connection(
    storage: SqlServerStorage, admin: Callable[[], Any]
) -> None:
    conn = admin()
    try:
        with pytest.raises(ConfigError, match="autocommit off"):
            add_in_transaction(conn, [make_envelope()], schema=storage.names.schema)
    finally:
        conn.close()


def test_re_adding_a_stored_id_is_a_no_op(storage: SqlServerStorage) -> None:
    env = make_envelope("dup")
    storage.add([env])
    storage.add([env, env])
    assert storage.counts("dup")["dup"] == {JobState.READY: 1}


def test_batch_larger_than_one_insert_chunk(storage: SqlServerStorage) -> None:
    envs = [make_envelope("big", arguments={"i": i}) for i in range(2500)]
    storage.add(envs)
    assert storage.counts("big")["big"][JobState.READY] == 2500
    first = storage.claim("big", 3, LEASE, "w")
    assert [c.job.id for c in first] == [e.id for e in envs[:3]]


def test_text_survives_unicode_and_case(storage: SqlServerStorage) -> None:
    env = make_envelope("Case", arguments={"name": "Zoë 🚀 \u0000 end", "k": "Bob"})
    storage.add([env])
    assert storage.claim("case", 10, LEASE, "w") == []  # queues are case-sensitive
    [claim] = storage.claim("Case", 10, LEASE, "w")
    assert claim.job.arguments == env.arguments
    assert storage.search(JobQuery(arguments={"k": "bob"})).total == 0
    assert storage.search(JobQuery(arguments={"k": "Bob"})).total == 1


def test_search_by_argument_types(storage: SqlServerStorage) -> None:
    storage.add(
        [
            make_envelope("a", arguments={"n": 2, "flag": True, "tags": ["x"], "none": None}),
            make_envelope("a", arguments={"n": 3, "flag": False, "tags": ["y"], "none": 1}),
        ]
    )
    assert storage.search(JobQuery(arguments={"n": 2})).total == 1
    assert storage.search(JobQuery(arguments={"flag": False})).total == 1
    assert storage.search(JobQuery(arguments={"tags": ["y"]})).total == 1
    assert storage.search(JobQuery(arguments={"none": None})).total == 1
    assert storage.search(JobQuery(arguments={"n": 2, "flag": True})).total == 1
    assert storage.search(JobQuery(arguments={"n": "2"})).total == 0  # a string is not a number


def test_extend_reports_lost_leases(storage: SqlServerStorage) -> None:
    storage.add([make_envelope("ext"), make_envelope("ext")])
    a, b = storage.claim("ext", 2, LEASE, "w")
    storage.complete(a, None)
    assert storage.extend([a, b], LEASE) == {a.job.id}


def test_lease_lost_after_cancel_requeue_race(storage: SqlServerStorage) -> None:
    env = make_envelope("race")
    storage.add([env])
    [claim] = storage.claim("race", 1, LEASE, "w")
    storage.complete(claim, 1)
    assert storage.requeue(env.id) is True
    [again] = storage.claim("race", 1, LEASE, "w")
    with pytest.raises(LeaseLost):
        storage.complete(claim, 2)
    storage.complete(again, 3)
    record = storage.get(env.id)
    assert record is not None
    assert record.result == 3


def test_times_are_stored_as_utc(storage: SqlServerStorage, admin: Callable[[], Any]) -> None:
    env = make_envelope("utc", delay=3600)
    storage.add([env])
    conn = admin()
    try:
        row = conn.execute(
            f"SELECT run_at, DATEDIFF(second, SYSUTCDATETIME(), run_at) FROM {storage.names.jobs} "
            "WHERE id = ?",
            env.id,
        ).fetchone()
    finally:
        conn.close()
    assert abs(row[0] - env.run_at.replace(tzinfo=None)) < timedelta(milliseconds=1)
    assert 3500 < row[1] <= 3600  # measured against the server's UTC clock


def test_purge_in_batches(storage: SqlServerStorage) -> None:
    storage.add([make_envelope("p") for _ in range(1500)])
    claims = storage.claim("p", 1500, LEASE, "w")
    for c in claims:
        storage.complete(c, None)
    assert storage.purge([JobState.SUCCEEDED], queue="p") == 1500


def test_migrate_on_start_off_with_missing_tables_names_the_command(
    make_options: Callable[..., SqlServerOptions],
) -> None:
    with pytest.raises(ConfigError, match="oddjob sqlserver migrate"):
        SqlServerStorage(make_options(migrate_on_start=False))


def test_concurrent_starts_apply_each_migration_once(
    make_options: Callable[..., SqlServerOptions], admin: Callable[[], Any], schema: str
) -> None:
    errors: list[BaseException] = []
    made: list[SqlServerStorage] = []

    def start() -> None:
        try:
            made.append(SqlServerStorage(make_options()))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for s in made:
        s.close()
    assert not errors, errors
    conn = admin()
    try:
        rows = conn.execute(f"SELECT version FROM [{schema}].[schema_migrations]").fetchall()
    finally:
        conn.close()
    assert [r[0] for r in rows] == list(range(1, LATEST + 1))


def test_table_prefix_keeps_two_installations_apart(
    make_options: Callable[..., SqlServerOptions], drop: Callable[..., None], schema: str
) -> None:
    a = SqlServerStorage(make_options())
    b = SqlServerStorage(make_options(table_prefix="b_"))
    try:
        a.add([make_envelope("q")])
        assert b.claim("q", 10, LEASE, "w") == []
        assert len(a.claim("q", 10, LEASE, "w")) == 1
    finally:
        a.close()
        b.close()
        drop(schema, "b_")


def test_unknown_token_owns_nothing(storage: SqlServerStorage) -> None:
    storage.add([make_envelope("tok")])
    [claim] = storage.claim("tok", 1, LEASE, "w")
    forged: Any = type(claim)(
        job=claim.job, token=str(uuid.uuid4()), owner="x", lease_expires_at=utcnow()
    )
    with pytest.raises(LeaseLost):
        storage.complete(forged, None)
    not_a_uuid: Any = type(claim)(job=claim.job, token="7", owner="x", lease_expires_at=utcnow())
    with pytest.raises(LeaseLost):
        storage.fail(not_a_uuid, None)  # type: ignore[arg-type]
    storage.complete(claim, None)


def test_a_statement_error_names_the_server_and_not_the_password(
    storage: SqlServerStorage,
) -> None:
    with pytest.raises(StorageError) as info:
        storage.database.run("probing", lambda cur, _: cur.execute("SELECT * FROM no_such_table"))
    assert storage.target in str(info.value)
    assert "no_such_table" in str(info.value)
