"""Fresh, throw-away databases and vhosts per run, so no run sees another's leftovers."""

from __future__ import annotations

import os
import shutil
import subprocess
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo

PG_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def pg_create_database(name: str) -> str:
    """Create database ``name`` on the benchmark server; return its DSN."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return conninfo.make_conninfo(PG_DSN, dbname=name)


def pg_drop_database(name: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_analyze(dsn: str) -> None:
    """ANALYZE the fresh database, as autovacuum would soon after a bulk load.

    Without it the planner of a brand-new database has no statistics and some
    queues' claim queries pick a plan that scans everything.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")


def pg_transactions(name: str) -> int:
    """Committed + rolled-back transactions in database ``name`` so far (pg_stat_database)."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


def pg_available() -> str | None:
    """None if the PostgreSQL server answers, else why not (no password in the text)."""
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        host = conninfo.conninfo_to_dict(PG_DSN).get("host", "?")
        return f"PostgreSQL at {host} is not reachable ({type(exc).__name__}); set BENCH_PG_DSN"
    return None


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def amqp_available() -> str | None:
    import socket

    parts = urlsplit(AMQP_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 3).close()
    except OSError as exc:
        return f"RabbitMQ at {parts.hostname}:{parts.port or 5672} is not reachable ({exc})"
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not on PATH (needed to create a throw-away vhost per run)"
    return None


def amqp_create_vhost(name: str) -> str:
    """Create vhost ``name`` with full rights for the URL's user; return the URL for it."""
    parts = urlsplit(AMQP_URL)
    user = parts.username or "guest"
    _rabbitmqctl("add_vhost", name)
    _rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(name, safe=""), "", ""))


def amqp_delete_vhost(name: str) -> None:
    try:
        _rabbitmqctl("delete_vhost", name)
    except subprocess.CalledProcessError:
        pass
