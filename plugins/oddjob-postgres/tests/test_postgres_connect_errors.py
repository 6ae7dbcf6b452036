"""A wrong DSN fails at once with the server's reason, not after retries (#19)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from oddjob_postgres.database import permanent_reason

from oddjob_core.testing.cli import oddjob

BASE = "postgresql://postgres@127.0.0.1:5432"


@pytest.mark.parametrize(
    ("dsn", "reason"),
    [
        (f"{BASE}/oddjob_no_such_db_x", 'database "oddjob_no_such_db_x" does not exist'),
        ("postgresql://oddjob_no_such_role@127.0.0.1:5432/test", 'role "oddjob_no_such_role"'),
        (f"{BASE}/test?sslmode=require", "SSL"),
    ],
)
def test_a_wrong_dsn_fails_at_once_through_the_real_command(
    tmp_path: Path, dsn: str, reason: str, admin: psycopg.Connection[object]
) -> None:
    (tmp_path / "oddjob.toml").write_text(f'storage = "postgres"\n[postgres]\ndsn = "{dsn}"\n')
    start = time.monotonic()
    done = oddjob("queues", cwd=tmp_path)
    elapsed = time.monotonic() - start
    if reason == "SSL" and done.returncode == 0:
        pytest.skip("this server accepts TLS")
    assert done.returncode == 1
    assert reason in done.stderr
    assert "not retried" in done.stderr
    assert "pool_max_size" not in done.stderr
    assert "retry" not in done.stderr, done.stderr  # no retry warnings: failed on the first try
    assert elapsed < 60  # the retry loop alone would take retry_timeout (15 s) on top


def test_the_reasons_that_are_not_retried() -> None:
    def reason(text: str) -> str | None:
        return permanent_reason(psycopg.OperationalError(text), "postgresql://u:pw@h/db")

    assert (
        reason(
            'connection failed: connection to server at "h", port 5432 failed: '
            'FATAL:  password authentication failed for user "u"'
        )
        == 'password authentication failed for user "u"'
    )
    assert reason("connection failed: ... failed: FATAL:  no pg_hba.conf entry for host") == (
        "no pg_hba.conf entry for host"
    )
    assert reason("connection failed: ... failed: Connection refused") is None
    assert reason("connection failed: FATAL:  the database system is starting up") is None
    assert reason("connection failed: FATAL:  sorry, too many clients already") is None
