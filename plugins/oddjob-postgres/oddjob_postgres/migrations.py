"""Versioned schema migrations: migration N is plain SQL text, applied once, in order.

``schema_migrations`` records applied versions. ``migrate`` runs under a
transaction-scoped advisory lock, so workers starting together (each with
``migrate_on_start``) apply every migration exactly once; DDL is transactional
in PostgreSQL, so a failed migration leaves nothing half done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from .options import check_identifier


@dataclass(frozen=True)
class Migration:
    """One schema change; ``sql`` uses ``{schema}`` for the quoted schema name."""

    version: int
    name: str
    sql: str

    def render(self, schema: str) -> str:
        """The SQL with the schema spliced in (validated identifier, quoted)."""
        return self.sql.replace("{schema}", quote(schema)).strip() + "\n"


# States are text with a CHECK rather than an enum type: adding a state later is
# one ALTER of a constraint, not an enum migration that cannot run in a transaction.
_V1 = """
CREATE TABLE {schema}.jobs (
    id               uuid        PRIMARY KEY,
    queue            text        NOT NULL,
    target           text        NOT NULL,
    state            text        NOT NULL CONSTRAINT jobs_state_check CHECK (state IN
                         ('scheduled', 'ready', 'running', 'retrying',
                          'succeeded', 'failed', 'cancelled')),
    priority         integer     NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    token            bigint,
    lease_owner      text,
    lease_expires_at timestamptz,
    envelope         jsonb       NOT NULL,
    errors           jsonb       NOT NULL DEFAULT '[]',
    result           jsonb,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);

COMMENT ON TABLE {schema}.jobs IS
    'oddjob jobs. envelope is the job as enqueued; the columns state, run_at, attempts and '
    'errors are authoritative and override the same fields inside envelope.';

-- Fencing tokens: unique per claim. Cached per session; only uniqueness matters.
CREATE SEQUENCE {schema}.claim_tokens AS bigint CACHE 100;

-- Claim order over waiting rows only: finished rows never enter this index,
-- so a growing history does not slow claims down.
CREATE INDEX jobs_claim_order ON {schema}.jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('scheduled', 'ready', 'retrying');

-- Earliest waiting job per queue (next_due), again waiting rows only.
CREATE INDEX jobs_due ON {schema}.jobs (queue, run_at)
    WHERE state IN ('scheduled', 'ready', 'retrying');

-- Running rows by lease expiry: a crashed worker's jobs are found by the claim query.
CREATE INDEX jobs_leases ON {schema}.jobs (queue, lease_expires_at)
    WHERE state = 'running';

-- A queue table churns: vacuum it sooner than the default 20 % of dead rows.
ALTER TABLE {schema}.jobs SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);
"""

# The claim must walk jobs_claim_order whatever the statistics say. Right after a
# large enqueue the table's statistics still say "empty"; the planner then took
# jobs_due (queue, run_at), fetched every due row and sorted them: 70 ms per claim
# at 40,000 ready jobs instead of 0.1 ms. jobs_due now covers only rows that wait
# for a time (scheduled, retrying), which the claim's predicate does not imply, so
# the planner cannot pick it for claims; next_due asks about ready rows separately.
_V2 = """
DROP INDEX {schema}.jobs_due;
CREATE INDEX jobs_due ON {schema}.jobs (queue, run_at)
    WHERE state IN ('scheduled', 'retrying');
"""

# Workers announce themselves (oddjob_core.worker_registry); the dashboard charts
# finished jobs per minute through a partial index that holds no waiting row.
_V3 = """
CREATE TABLE {schema}.workers (
    id         text        PRIMARY KEY,
    info       jsonb       NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX jobs_finished ON {schema}.jobs (finished_at)
    WHERE state IN ('succeeded', 'failed');
-- The failed jobs, newest first (the dashboard's first stop); failures are rare, so
-- this index costs the hot path next to nothing.
CREATE INDEX jobs_failed ON {schema}.jobs (id) WHERE state = 'failed';
"""

# Unique jobs and schedule state (issue #15). The unique index covers live rows only:
# a job that finishes leaves it, which releases its key. kv holds small shared values
# (paused schedules, how far each schedule's ticks were enqueued).
_V4 = """
CREATE UNIQUE INDEX jobs_unique_key ON {schema}.jobs (queue, (envelope->>'key'))
    WHERE envelope->>'key' IS NOT NULL
      AND state IN ('scheduled', 'ready', 'retrying', 'running');

CREATE TABLE {schema}.kv (
    key        text        PRIMARY KEY,
    value      bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs table, claim indexes, token sequence", _V1),
    Migration(2, "jobs_due covers only time-waiting rows (claims keep the claim index)", _V2),
    Migration(3, "workers table, jobs_finished and jobs_failed indexes (dashboard)", _V3),
    Migration(4, "unique job keys over live rows; kv table for schedule state", _V4),
)

LATEST = MIGRATIONS[-1].version

_BOOKKEEPING = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


def quote(identifier: str) -> str:
    """Quote a validated identifier for SQL text."""
    return '"' + check_identifier(identifier, "schema") + '"'


def script(schema: str) -> str:
    """Every migration as one SQL script (what ``oddjob postgres migrate --print`` shows)."""
    parts = [
        f"-- oddjob-postgres schema {schema!r}, migrations 1..{LATEST}",
        "BEGIN;",
        _BOOKKEEPING.replace("{schema}", quote(schema)).strip(),
    ]
    for m in MIGRATIONS:
        parts.append(f"-- migration {m.version}: {m.name}")
        parts.append(m.render(schema).strip())
        parts.append(
            f"INSERT INTO {quote(schema)}.schema_migrations (version, name) "
            f"VALUES ({m.version}, '{m.name}');"
        )
    parts.append("COMMIT;")
    return "\n\n".join(parts) + "\n"


def applied_version(conn: psycopg.Connection[Any], schema: str) -> int:
    """The highest applied migration (0 when the schema or its bookkeeping table is missing)."""
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{quote(schema)}.schema_migrations",)
    ).fetchone()
    if not row or not row[0]:
        return 0
    found = conn.execute(
        f"SELECT coalesce(max(version), 0) FROM {quote(schema)}.schema_migrations"
    ).fetchone()
    return int(found[0]) if found else 0


def migrate(conn: psycopg.Connection[Any], schema: str) -> list[Migration]:
    """Apply pending migrations in one transaction; return those applied now.

    Safe to run from many processes at once: the advisory lock makes the
    others wait, and they then find nothing left to do.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"oddjob.migrate.{schema}",))
        conn.execute(_BOOKKEEPING.replace("{schema}", quote(schema)))
        done = {
            int(r[0])
            for r in conn.execute(f"SELECT version FROM {quote(schema)}.schema_migrations")
        }
        applied: list[Migration] = []
        for m in MIGRATIONS:
            if m.version in done:
                continue
            conn.execute(m.render(schema).encode())
            conn.execute(
                f"INSERT INTO {quote(schema)}.schema_migrations (version, name) VALUES (%s, %s)",
                (m.version, m.name),
            )
            applied.append(m)
    return applied
