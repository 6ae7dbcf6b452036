"""The whole engine in one process on PostgreSQL: enqueue through the app, drain with worker threads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from oddjob_postgres import PostgresStorage

from oddjob_core import Oddjob, RetryPolicy, call
from oddjob_core.model import JobState
from oddjob_core.testing import targets


@pytest.fixture
def app(dsn: str, schema: str) -> Iterator[Oddjob]:
    targets.reset()
    with Oddjob(
        storage="postgres",
        postgres={"dsn": dsn, "schema": schema, "pool_max_size": 6},
        allowed_prefixes=["oddjob_core.testing.targets"],
        poll_interval=0.2,
    ) as application:
        yield application


def test_app_selects_the_postgres_backend_by_name(app: Oddjob) -> None:
    assert isinstance(app.storage, PostgresStorage)


def test_jobs_run_with_typed_arguments_retries_and_async(app: Oddjob) -> None:
    ids = app.enqueue_many([call(targets.echo, "echo", {"n": i}) for i in range(20)])
    flaky = app.options(retry=RetryPolicy(max_retries=3, min_wait=0.05, jitter=0)).enqueue(
        targets.fail_times, "flaky", 2
    )
    doomed = app.options(retry=RetryPolicy(max_retries=0)).enqueue(
        targets.raise_value_error, "doomed"
    )
    later = app.options(delay=timedelta(days=2)).enqueue(targets.echo, "later", 1)
    asynchronous = app.enqueue(targets.async_echo, "async", 7)
    for _ in range(5):  # burst mode can stop while a retry is being recorded: run it again
        app.run_worker(["default"], workers=4, burst=True, burst_wait=1.0, handle_signals=False)
        if not app.get(flaky).state.waiting:
            break
    states: dict[Any, JobState] = {i: app.get(i).state for i in [*ids, flaky, doomed, later]}
    assert all(states[i] is JobState.SUCCEEDED for i in ids)
    assert states[flaky] is JobState.SUCCEEDED
    assert app.get(flaky).envelope.attempts == 3
    assert len(app.get(flaky).envelope.errors) == 2
    assert states[doomed] is JobState.FAILED
    assert states[later] is JobState.SCHEDULED
    assert app.get(asynchronous).result == 14  # async_echo doubles its value
    assert sorted(v["n"] for v in targets.SEEN["echo"]) == list(range(20))


def test_readme_transactional_enqueue_recipe(app: Oddjob, dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("CREATE TEMP TABLE orders (id int)")
        conn.execute("INSERT INTO orders VALUES (42)")
        env = app.options(queue="mail").envelope(call(targets.echo, "receipt", 42))
        app.storage.add([env], connection=conn)  # type: ignore[call-arg]
    app.run_worker(["mail"], workers=1, burst=True, handle_signals=False)
    assert app.get(env.id).state is JobState.SUCCEEDED
    assert targets.SEEN["receipt"] == [42]


def test_a_forked_child_enqueues_over_connections_of_its_own(app: Oddjob) -> None:
    """Parent and forked child (the processes executor, a user's fork) enqueue at once.

    Sharing the parent's pooled connections interleaved both processes' traffic
    on one socket ("prepared statement _pg3_0 already exists", lost answers).
    """
    import gc
    import os

    for i in range(5):  # the parent's pool is open and warm before the fork
        app.enqueue(targets.echo, "parent", i)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read)
            ids = [app.enqueue(targets.echo, "child", i) for i in range(40)]
            app.close()  # its own storage: the parent's connections stay open
            gc.collect()  # the parent's storage, dropped here, is not finalized either
            os.write(write, "\n".join(map(str, ids)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    parent_ids = [app.enqueue(targets.echo, "parent", i) for i in range(40)]  # meanwhile
    with os.fdopen(read) as pipe:
        child_ids = pipe.read().split()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent_ids += [app.enqueue(targets.echo, "parent", i) for i in range(40)]  # after the child
    assert len(child_ids) == 40
    assert all(app.get(i).state is JobState.READY for i in [*parent_ids, *child_ids])
