"""PostgreSQL-specific behaviour: transactional enqueue, LISTEN/NOTIFY, errors, migrations, fencing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from oddjob_postgres import PostgresOptions, PostgresStorage, add_in_transaction
from oddjob_postgres.migrations import LATEST, applied_version, migrate

from oddjob_core.clock import utcnow
from oddjob_core.config import backend_options, settings_from_dict
from oddjob_core.errors import ConfigError, LeaseLost, StorageUnavailable
from oddjob_core.model import Claim, JobQuery, JobState
from oddjob_core.testing import make_envelope

LEASE = 30.0


def _exists(admin: psycopg.Connection[Any], schema: str, job_id: uuid.UUID) -> bool:
    return (
        admin.execute(f'SELECT 1 FROM "{schema}".jobs WHERE id = %s', (job_id,)).fetchone()
        is not None
    )


# -- transactional enqueue ------------------------------------------------------------


def test_transactional_add_rolled_back_leaves_no_job(
    storage: PostgresStorage, dsn: str, admin: psycopg.Connection[Any]
) -> None:
    env = make_envelope("tx")
    with psycopg.connect(dsn) as conn, conn.transaction(force_rollback=True):
        storage.add([env], connection=conn)
        assert _exists(conn, storage.schema, env.id)  # visible inside the transaction
        assert not _exists(admin, storage.schema, env.id)  # but not outside it yet
    assert not _exists(admin, storage.schema, env.id)
    assert storage.claim("tx", 10, LEASE, "w") == []


def test_transactional_add_committed_is_claimed(
    storage: PostgresStorage, dsn: str, schema: str
) -> None:
    env = make_envelope("tx")
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("CREATE TEMP TABLE orders (id int)")  # the caller's own work, same transaction
        add_in_transaction(conn, [env], schema=schema)
    assert [c.job.id for c in storage.claim("tx", 10, LEASE, "w")] == [env.id]


def test_transactional_add_notifies_only_on_commit(storage: PostgresStorage, dsn: str) -> None:
    waiter = PostgresStorage(storage.options)
    try:
        _start_listening(waiter, "txn")
        with psycopg.connect(dsn) as conn:
            with conn.transaction(force_rollback=True):
                storage.add([make_envelope("txn")], connection=conn)
            started = time.monotonic()
            waiter.wait_for_work(["txn"], 1.0)
            assert time.monotonic() - started >= 0.9, "woken by a rolled-back enqueue"
            with conn.transaction():
                storage.add([make_envelope("txn")], connection=conn)
        started = time.monotonic()
        waiter.wait_for_work(["txn"], 20.0)
        assert time.monotonic() - started < 10, "not woken by a committed enqueue"
    finally:
        waiter.close()


# -- LISTEN/NOTIFY --------------------------------------------------------------------


def _start_listening(waiter: PostgresStorage, queue: str) -> None:
    """Start ``waiter``'s listener on ``queue`` and consume the wake-up it sends on connecting.

    That wake-up ("whatever was notified while we were away") comes just after the
    listener connects; left pending, it ends the test's next wait at once.
    """
    listener = waiter.listener
    if listener.wait([queue], 0.01):
        return  # connected, and its wake-up came, within the 10 ms
    assert listener.connected.wait(10), "the listener did not connect"
    assert listener.wait([queue], 10), "the listener's wake-up on connecting never came"


def _woken_within(
    waiter: PostgresStorage, queue: str, action: Callable[[], object], timeout: float = 20.0
) -> float:
    """Start waiting on ``queue`` in a thread, run ``action``, return how long the wait took."""
    if waiter.listener._thread is None:  # first use: the connect wake-up is still to come
        _start_listening(waiter, queue)
    took: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        waiter.wait_for_work([queue], timeout)
        took.append(time.monotonic() - started)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.2)
    action()
    thread.join(timeout + 5)
    return took[0]


def test_add_wakes_a_worker_waiting_in_another_instance(storage: PostgresStorage) -> None:
    waiter = PostgresStorage(storage.options)
    try:
        took = _woken_within(waiter, "wake", lambda: storage.add([make_envelope("wake")]))
        assert took < 10
        assert len(waiter.claim("wake", 10, LEASE, "w")) == 1
    finally:
        waiter.close()


def test_retry_due_now_release_and_requeue_wake_waiting_workers(storage: PostgresStorage) -> None:
    from oddjob_core.model import AttemptError

    storage.add([make_envelope("rw"), make_envelope("rw")])
    first, second = storage.claim("rw", 2, LEASE, "w")
    waiter = PostgresStorage(storage.options)
    try:
        error = AttemptError(attempt=1, type="builtins.RuntimeError", message="x", at=utcnow())
        assert _woken_within(waiter, "rw", lambda: storage.retry(first, utcnow(), error)) < 10
        assert _woken_within(waiter, "rw", lambda: storage.release([second])) < 10
        claims = storage.claim("rw", 2, LEASE, "w")
        for claim in claims:
            storage.fail(claim, error)
        assert _woken_within(waiter, "rw", lambda: storage.requeue(claims[0].job.id)) < 10
    finally:
        waiter.close()


def test_waiting_for_a_quiet_queue_times_out(storage: PostgresStorage) -> None:
    _start_listening(storage, "quiet")
    storage.add([make_envelope("other")])
    started = time.monotonic()
    storage.wait_for_work(["quiet"], 0.5)
    assert time.monotonic() - started >= 0.45


def test_job_two_days_ahead_stays_put(storage: PostgresStorage) -> None:
    later = utcnow() + timedelta(days=2)
    env = make_envelope("future", run_at=later)
    storage.add([env])
    assert storage.claim("future", 10, LEASE, "w") == []
    record = storage.get(env.id)
    assert record is not None
    assert record.state is JobState.SCHEDULED
    due = storage.next_due("future")
    assert due is not None
    assert abs((due - later).total_seconds()) < 0.001


# -- errors and reconnection --------------------------------------------------------


def test_unreachable_server_names_host_port_and_database_but_not_the_password() -> None:
    options = PostgresOptions(
        dsn="postgresql://postgres:s3cret-pw@127.0.0.1:1/test",
        connect_timeout=0.5,
        retry_timeout=1.0,
        pool_min_size=0,
    )
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        PostgresStorage(options)
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "database test" in message
    assert "s3cret" not in message
    assert "dsn" in message  # names the fix
    assert time.monotonic() - started < 30


def test_killed_connections_are_replaced_transparently(
    make_options: Callable[..., PostgresOptions], admin: psycopg.Connection[Any]
) -> None:
    name = f"oddjob-test-{uuid.uuid4().hex[:8]}"
    storage = PostgresStorage(make_options(application_name=name, pool_min_size=2))
    try:
        storage.add([make_envelope("kill") for _ in range(3)])
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (name,),
        ).fetchone()
        assert killed is not None
        assert killed[0] >= 1
        claims = storage.claim("kill", 10, LEASE, "w")  # the retry loop reconnects
        assert len(claims) == 3
        for claim in claims:
            storage.complete(claim, "ok")
        assert storage.counts("kill")["kill"] == {JobState.SUCCEEDED: 3}
    finally:
        storage.close()


def test_listener_reconnects_and_wakes_after_its_connection_is_killed(
    make_options: Callable[..., PostgresOptions], admin: psycopg.Connection[Any]
) -> None:
    name = f"oddjob-listen-{uuid.uuid4().hex[:8]}"
    waiter = PostgresStorage(make_options(application_name=name))
    producer = PostgresStorage(make_options())
    try:
        _start_listening(waiter, "l")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND query LIKE 'LISTEN%%'",
            (name,),
        )
        deadline = time.monotonic() + 10
        while waiter.listener.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiter.listener.connected.wait(15), "listener did not reconnect"
        # consume the wake-up it sends on reconnecting, so only the add can end the wait
        assert waiter.listener.wait(["l"], 10), "no wake-up after reconnecting"
        took = _woken_within(waiter, "l", lambda: producer.add([make_envelope("l")]))
        assert took < 10
    finally:
        waiter.close()
        producer.close()


# -- fencing and group commit ---------------------------------------------------------


def test_concurrent_completes_each_get_their_own_outcome(storage: PostgresStorage) -> None:
    storage.add([make_envelope("group") for _ in range(120)])
    claims: list[Claim] = []
    while len(claims) < 120:
        claims += storage.claim("group", 50, LEASE, "w")
    stale = {c.job.id for c in claims[::3]}
    storage.release([c for c in claims if c.job.id in stale])  # their tokens are now stale
    results: dict[uuid.UUID, str] = {}
    lock = threading.Lock()

    def work(part: list[Any]) -> None:
        for claim in part:
            try:
                storage.complete(claim, {"id": str(claim.job.id)})
                outcome = "ok"
            except LeaseLost:
                outcome = "lost"
            with lock:
                results[claim.job.id] = outcome

    threads = [threading.Thread(target=work, args=(claims[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {i for i, o in results.items() if o == "lost"} == stale
    assert len(results) == 120
    some = next(c for c in claims if c.job.id not in stale)
    record = storage.get(some.job.id)
    assert record is not None
    assert record.result == {"id": str(some.job.id)}
    assert storage.counts("group")["group"] == {JobState.SUCCEEDED: 80, JobState.READY: 40}


def test_a_claim_token_of_another_backend_owns_nothing(storage: PostgresStorage) -> None:
    from oddjob_core.model import Claim

    storage.add([make_envelope("foreign")])
    [claim] = storage.claim("foreign", 1, LEASE, "w")
    forged = Claim(
        job=claim.job, token="not-a-number", owner="w", lease_expires_at=claim.lease_expires_at
    )
    with pytest.raises(LeaseLost):
        storage.complete(forged)
    assert storage.extend([forged], LEASE) == {claim.job.id}


# -- management -----------------------------------------------------------------------


def test_corrupt_job_is_still_shown_by_management(
    storage: PostgresStorage, admin: psycopg.Connection[Any]
) -> None:
    env = make_envelope("bad")
    admin.execute(
        f'INSERT INTO "{storage.schema}".jobs (id, queue, target, state, run_at, envelope, '
        """created_at) VALUES (%s, 'bad', 'pkg:fn', 'ready', now(), '{"nope": 1}', now())""",
        (env.id,),
    )
    assert storage.claim("bad", 10, LEASE, "w") == []
    record = storage.get(env.id)
    assert record is not None
    assert record.state is JobState.FAILED
    assert record.envelope.target == "pkg:fn"
    [error] = record.envelope.errors  # the reason it was failed, kept with the job
    assert "cannot be decoded" in error.message
    assert storage.search(JobQuery(queue="bad")).total == 1


def test_search_by_argument_is_exact_equality(storage: PostgresStorage) -> None:
    storage.add(
        [
            make_envelope("args", arguments={"tags": ["a", "b"], "n": 1}),
            make_envelope("args", arguments={"tags": ["a"], "n": 2}),
            make_envelope("args", arguments={"nested": {"x": 1, "y": 2}}),
        ]
    )
    assert storage.search(JobQuery(arguments={"tags": ["a"]})).total == 1
    assert storage.search(JobQuery(arguments={"tags": ["a", "b"], "n": 1})).total == 1
    assert storage.search(JobQuery(arguments={"nested": {"x": 1}})).total == 0
    assert storage.search(JobQuery(arguments={"n": 3})).total == 0


def test_purge_removes_large_histories_in_batches(storage: PostgresStorage) -> None:
    storage.add([make_envelope("big") for _ in range(12_000)])
    while claims := storage.claim("big", 1000, LEASE, "w"):
        for c in claims:
            storage.complete(c)
    assert storage.purge([JobState.SUCCEEDED], queue="big") == 12_000
    assert storage.counts("big") == {}


# -- schema and options ---------------------------------------------------------------


def test_migrations_are_recorded_and_idempotent(
    storage: PostgresStorage, dsn: str, schema: str
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert applied_version(conn, schema) == LATEST
        assert migrate(conn, schema) == []


def test_concurrent_migrations_apply_once(
    make_options: Callable[..., PostgresOptions], dsn: str, schema: str
) -> None:
    applied: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                applied.extend(m.version for m in migrate(conn, schema))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(applied) == list(range(1, LATEST + 1))


def test_without_migrate_on_start_a_missing_schema_names_the_command(
    make_options: Callable[..., PostgresOptions],
) -> None:
    with pytest.raises(ConfigError, match="oddjob postgres migrate"):
        PostgresStorage(make_options(migrate_on_start=False))


def test_bad_schema_name_is_refused_with_its_config_path() -> None:
    settings = settings_from_dict(
        {"storage": "postgres", "postgres": {"schema": "jobs; DROP TABLE x"}}
    )
    with pytest.raises(ConfigError, match=r"postgres.*schema.*plain PostgreSQL identifier"):
        backend_options(settings, "postgres", PostgresOptions)


def test_unknown_option_is_refused() -> None:
    settings = settings_from_dict({"postgres": {"pool_size": 3}})
    with pytest.raises(ConfigError, match="pool_size"):
        backend_options(settings, "postgres", PostgresOptions)


def test_retention_purges_old_finished_jobs_only(
    make_options: Callable[..., PostgresOptions], admin: psycopg.Connection[Any]
) -> None:
    storage = PostgresStorage(make_options(retention_days=1.0))
    try:
        old, fresh = make_envelope("ret"), make_envelope("ret")
        waiting = make_envelope("ret", delay=600)
        storage.add([old, fresh])
        for claim in storage.claim("ret", 10, LEASE, "w"):
            storage.complete(claim)
        storage.add([waiting])
        admin.execute(
            f"UPDATE \"{storage.schema}\".jobs SET updated_at = now() - interval '2 days' "
            "WHERE id = ANY(%s)",
            ([old.id, waiting.id],),
        )
        storage.retention.due_at = 0.0  # sweep on the next claim instead of in 5 s
        storage.claim("ret", 1, LEASE, "w")
        deadline = time.monotonic() + 10
        while storage.get(old.id) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert storage.get(old.id) is None
        assert storage.get(fresh.id) is not None
        assert storage.get(waiting.id) is not None  # waiting jobs are never purged
    finally:
        storage.close()


def test_claims_and_outcome_writes_use_the_intended_indexes(
    storage: PostgresStorage, admin: psycopg.Connection[Any]
) -> None:
    """Claims walk the partial claim index; fenced writes look the id up in the primary key."""
    from oddjob_postgres.storage import statements

    storage.add([make_envelope("plan") for _ in range(5000)])
    claims = storage.claim("plan", 200, LEASE, "w")
    for claim in claims[:100]:
        storage.complete(claim)
    admin.execute(f'ANALYZE "{storage.schema}".jobs')
    sql = statements(storage.schema)
    claim_plan = "\n".join(
        r[0]
        for r in admin.execute(
            "EXPLAIN " + sql.claim, {"queue": "plan", "limit": 10, "lease": 30, "owner": "x"}
        )
    )
    assert "jobs_claim_order" in claim_plan
    assert "Seq Scan" not in claim_plan
    one = claims[150]
    complete_plan = "\n".join(
        r[0]
        for r in admin.execute(
            "EXPLAIN " + sql.complete,
            {"ids": [one.job.id], "tokens": [int(one.token)], "results": "{}"},
        )
    )
    assert "jobs_pkey" in complete_plan
    assert "jobs_leases" not in complete_plan


def test_claim_walks_the_claim_index_even_before_statistics_exist(
    storage: PostgresStorage, admin: psycopg.Connection[Any]
) -> None:
    """Right after a big enqueue the planner believes the table is empty; claims must not sort.

    Before migration 2 the planner picked jobs_due here and sorted every due row:
    70 ms per claim at 40,000 ready jobs.
    """
    from oddjob_postgres.storage import statements

    for _ in range(40):  # the bad plan appeared between 20,000 and 40,000 ready rows
        storage.add([make_envelope("fresh") for _ in range(1000)])
    assert len(storage.claim("fresh", 16, LEASE, "w")) == 16
    plan = "\n".join(
        r[0]
        for r in admin.execute(
            "EXPLAIN " + statements(storage.schema).claim,
            {"queue": "fresh", "limit": 16, "lease": 30, "owner": "x"},
        )
    )
    assert "jobs_claim_order" in plan
    assert "Sort" not in plan, plan


def test_works_without_prepared_statements(make_options: Callable[..., PostgresOptions]) -> None:
    storage = PostgresStorage(make_options(prepared_statements=False))
    try:
        storage.add([make_envelope("np") for _ in range(3)])
        for _ in range(8):  # past psycopg's prepare threshold
            for claim in storage.claim("np", 1, LEASE, "w"):
                storage.complete(claim)
        assert storage.counts("np")["np"] == {JobState.SUCCEEDED: 3}
    finally:
        storage.close()


def test_migration_without_privileges_names_the_way_out(
    make_options: Callable[..., PostgresOptions], admin: psycopg.Connection[Any], dsn: str
) -> None:
    from oddjob_core.errors import StorageError

    role = f"oddjob_weak_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        weak_dsn = psycopg.conninfo.make_conninfo(dsn, user=role)
        with pytest.raises(StorageError, match="oddjob postgres migrate") as caught:
            PostgresStorage(make_options(dsn=weak_dsn, retry_timeout=1.0))
        assert "permission denied" in str(caught.value)
    finally:
        admin.execute(f"DROP ROLE {role}")


def test_nul_characters_in_arguments_are_refused_with_the_fix(storage: PostgresStorage) -> None:
    from oddjob_core.errors import EnqueueError

    with pytest.raises(EnqueueError, match=r"NUL character.*bytes"):
        storage.add([make_envelope("nul", arguments={"s": "a\x00b"})])
    storage.add([make_envelope("nul", arguments={"b": "YQBi"})])  # base64 bytes are fine
    assert len(storage.claim("nul", 10, LEASE, "w")) == 1


# -- batch enqueue by COPY -------------------------------------------------------------


def test_a_large_batch_of_new_jobs_is_stored_whole_by_copy(
    storage: PostgresStorage,
    admin: psycopg.Connection[Any],
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copies: list[int] = []
    copy_new = storage.copy_new

    def counting(conn: psycopg.Connection[Any], jobs: Any) -> None:
        copies.append(len(jobs))
        copy_new(conn, jobs)

    monkeypatch.setattr(storage, "copy_new", counting)
    storage.add([make_envelope("copy-small") for _ in range(10)])  # one insert statement
    due = [make_envelope("copy", arguments={"i": n, "s": "x"}, priority=n % 3) for n in range(160)]
    later = [make_envelope("copy", delay=3600) for _ in range(40)]
    storage.add(due + later)
    assert copies == [200]
    rows = admin.execute(
        f"SELECT state, count(*), min(attempts), max(attempts), bool_and(errors = '[]'), "
        f"bool_and(jsonb_typeof(envelope) = 'object'), bool_and(updated_at IS NOT NULL) "
        f'FROM "{schema}".jobs WHERE queue = %s GROUP BY state ORDER BY state',
        ("copy",),
    ).fetchall()
    assert rows == [
        ("ready", 160, 0, 0, True, True, True),
        ("scheduled", 40, 0, 0, True, True, True),
    ]
    record = storage.get(due[7].id)
    assert record is not None
    assert record.envelope == due[7]
    claimed = storage.claim("copy", 200, LEASE, "w")
    assert sorted(c.job.id for c in claimed) == sorted(e.id for e in due)
    found = storage.search(JobQuery(queue="copy", arguments={"i": 7}))
    assert [r.envelope.id for r in found.jobs] == [due[7].id]


def test_re_adding_a_large_batch_stores_only_the_new_ids(
    storage: PostgresStorage, admin: psycopg.Connection[Any], schema: str
) -> None:
    first = [make_envelope("again") for _ in range(150)]
    storage.add(first)
    claimed = storage.claim("again", 10, LEASE, "w")
    second = [make_envelope("again") for _ in range(150)]
    storage.add(first + second)  # COPY meets a stored id: the insert skips those
    assert storage.counts("again")["again"] == {JobState.READY: 290, JobState.RUNNING: 10}
    states = admin.execute(
        f'SELECT state FROM "{schema}".jobs WHERE id = ANY(%s)', ([c.job.id for c in claimed],)
    ).fetchall()
    assert {s for (s,) in states} == {"running"}  # stored jobs untouched by the re-add


def test_a_large_batch_wakes_a_waiting_worker(storage: PostgresStorage) -> None:
    waiter = PostgresStorage(storage.options)
    try:
        batch = [make_envelope("wakecopy") for _ in range(140)]
        took = _woken_within(waiter, "wakecopy", lambda: storage.add(batch))
        assert took < 10
        assert len(waiter.claim("wakecopy", 200, LEASE, "w")) == 140
    finally:
        waiter.close()


def test_a_large_batch_with_a_nul_character_is_refused_whole(storage: PostgresStorage) -> None:
    from oddjob_core.errors import EnqueueError

    batch = [make_envelope("nulcopy") for _ in range(140)]
    batch.append(make_envelope("nulcopy", arguments={"s": "a\x00b"}))
    with pytest.raises(EnqueueError, match=r"NUL character.*bytes"):
        storage.add(batch)
    assert storage.counts("nulcopy").get("nulcopy", {}) == {}
