"""The whole engine in one process on SQL Server (needs ODDJOB_SQLSERVER_DSN)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from oddjob_sqlserver import SqlServerStorage

from oddjob_core import Oddjob, RetryPolicy, call
from oddjob_core.model import JobState
from oddjob_core.testing import targets


@pytest.fixture
def app(dsn: str, schema: str) -> Iterator[Oddjob]:
    targets.reset()
    with Oddjob(
        storage="sqlserver",
        sqlserver={"connection_string": dsn, "schema": schema, "pool_size": 6},
        allowed_prefixes=["oddjob_core.testing.targets"],
        poll_interval=0.2,
    ) as application:
        yield application


def test_app_selects_the_sqlserver_backend_by_name(app: Oddjob) -> None:
    assert isinstance(app.storage, SqlServerStorage)


def test_jobs_run_with_retries_and_schedules(app: Oddjob) -> None:
    ids = app.enqueue_many([call(targets.echo, "echo", {"n": i}) for i in range(20)])
    flaky = app.options(retry=RetryPolicy(max_retries=3, min_wait=0.05, jitter=0)).enqueue(
        targets.fail_times, "flaky", 2
    )
    later = app.options(delay=timedelta(days=2)).enqueue(targets.echo, "later", 1)
    for _ in range(5):  # burst mode can stop while a retry is being recorded: run it again
        app.run_worker(["default"], workers=4, burst=True, burst_wait=1.0, handle_signals=False)
        if not app.get(flaky).state.waiting:
            break
    assert all(app.get(i).state is JobState.SUCCEEDED for i in ids)
    assert app.get(flaky).state is JobState.SUCCEEDED
    assert app.get(flaky).envelope.attempts == 3
    assert app.get(later).state is JobState.SCHEDULED


def test_readme_transactional_enqueue_recipe(app: Oddjob) -> None:
    storage = app.storage
    assert isinstance(storage, SqlServerStorage)
    with storage.connection() as conn:
        conn.execute("CREATE TABLE #orders (id int)")
        conn.execute("INSERT INTO #orders VALUES (42)")
        env = app.options(queue="mail").envelope(call(targets.echo, "receipt", 42))
        storage.add([env], connection=conn)
        conn.commit()
    app.run_worker(["mail"], workers=1, burst=True, handle_signals=False)
    assert app.get(env.id).state is JobState.SUCCEEDED
    assert targets.SEEN["receipt"] == [42]
