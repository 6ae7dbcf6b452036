"""Versioned schema migrations: migration N is a list of T-SQL statements, applied once, in order.

``<prefix>schema_migrations`` records applied versions. ``migrate`` (in
``storage``/``cli``) runs every pending migration in one transaction that first
takes an exclusive ``sp_getapplock`` on the installation, so workers starting
together apply each migration exactly once. ``CREATE TABLE`` and ``CREATE
INDEX`` are transactional in SQL Server: a failed migration leaves nothing
half done.

Design notes (see docs/sqlserver.md):

* The table is clustered on ``seq bigint IDENTITY``, not on the job id. Job ids
  are UUIDv7 (time-ordered), but SQL Server sorts ``uniqueidentifier`` by its
  *last* six bytes first, i.e. by the random part of a UUIDv7: clustering on it
  would scatter every insert over the whole B-tree (page splits, fragmentation).
  ``seq`` appends at the end; the id gets a unique nonclustered index.
* Text compared by the claim and fenced writes (queue, target, state) uses a
  binary collation: queue names are case-sensitive as everywhere in oddjob,
  and equality on BIN2 columns is the cheapest there is.
* Times are ``datetime2(7)`` holding UTC (the server side uses
  ``SYSUTCDATETIME()``, the client converts to UTC before sending).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .names import Names

WAITING = ("scheduled", "ready", "retrying")
#: waiting for their run_at: promoted to ready when it passes (migration 3)
PENDING = ("scheduled", "retrying")
CLAIMABLE = (*WAITING, "running")
FINISHED = ("succeeded", "failed", "cancelled")
ALL_STATES = (*CLAIMABLE, *FINISHED)

#: binary collation: case-sensitive, accent-sensitive, byte-order comparisons
BIN = "Latin1_General_100_BIN2"


def state_list(states: tuple[str, ...]) -> str:
    """``(N'a', N'b')``: a literal list of (fixed, internal) state names."""
    return "(" + ", ".join(f"N'{s}'" for s in states) + ")"


@dataclass(frozen=True)
class Migration:
    """One schema change: statements run in order inside the migration transaction."""

    version: int
    name: str
    build: Callable[[Names], tuple[str, ...]]
    #: the printed script runs each statement through ``EXEC (N'...')``: compiled when it
    #: runs, so a statement may use a column an earlier one of the same batch adds
    deferred: bool = False

    def __post_init__(self) -> None:
        if "'" in self.name:
            raise ValueError("migration names are spliced into SQL text: no quotes")

    def statements(self, names: Names) -> tuple[str, ...]:
        """The statements with the installation's names spliced in."""
        return tuple(s.strip() for s in self.build(names))


def _v1(n: Names) -> tuple[str, ...]:
    jobs = n.jobs
    return (
        f"""
CREATE TABLE {jobs} (
    seq              bigint IDENTITY(1, 1) NOT NULL,
    id               uniqueidentifier NOT NULL,
    queue            nvarchar(100) COLLATE {BIN} NOT NULL,
    target           nvarchar(400) COLLATE {BIN} NOT NULL,
    state            nvarchar(16) COLLATE {BIN} NOT NULL,
    priority         int NOT NULL CONSTRAINT {n.obj("DF", "priority")} DEFAULT 0,
    run_at           datetime2(7) NOT NULL,
    attempts         int NOT NULL CONSTRAINT {n.obj("DF", "attempts")} DEFAULT 0,
    token            uniqueidentifier NULL,
    lease_owner      nvarchar(200) NULL,
    lease_expires_at datetime2(7) NULL,
    envelope         nvarchar(max) NOT NULL,
    errors           nvarchar(max) NOT NULL CONSTRAINT {n.obj("DF", "errors")} DEFAULT N'[]',
    result           nvarchar(max) NULL,
    created_at       datetime2(7) NOT NULL,
    updated_at       datetime2(7) NOT NULL,
    finished_at      datetime2(7) NULL,
    CONSTRAINT {n.obj("PK")} PRIMARY KEY CLUSTERED (seq),
    CONSTRAINT {n.obj("CK", "state")} CHECK (state IN {state_list(ALL_STATES)}),
    CONSTRAINT {n.obj("CK", "envelope")} CHECK (ISJSON(envelope) = 1),
    CONSTRAINT {n.obj("CK", "errors")} CHECK (ISJSON(errors) = 1)
)
""",
        # Random access by job id. IGNORE_DUP_KEY makes re-adding a stored id a
        # no-op (a warning, not an error), race-free, like ON CONFLICT DO NOTHING.
        f"""
CREATE UNIQUE NONCLUSTERED INDEX {n.obj("UX", "id")} ON {jobs} (id)
    WITH (IGNORE_DUP_KEY = ON)
""",
        # The claim walks this index in claim order. Only claimable rows are in
        # it (finished history never is), so a growing history costs claims nothing.
        f"""
CREATE NONCLUSTERED INDEX {n.obj("IX", "claim")} ON {jobs} (queue, priority DESC, run_at, seq)
    INCLUDE (state, lease_expires_at)
    WHERE state IN {state_list(CLAIMABLE)}
""",
        # Earliest waiting job per queue (next_due).
        f"""
CREATE NONCLUSTERED INDEX {n.obj("IX", "due")} ON {jobs} (queue, run_at)
    WHERE state IN {state_list(WAITING)}
""",
        # Running rows by lease expiry: when a crashed worker's job becomes due again.
        f"""
CREATE NONCLUSTERED INDEX {n.obj("IX", "leases")} ON {jobs} (queue, lease_expires_at)
    WHERE state = N'running'
""",
        # Purge and retention: finished rows by age.
        f"""
CREATE NONCLUSTERED INDEX {n.obj("IX", "finished")} ON {jobs} (state, updated_at)
    INCLUDE (queue)
    WHERE state IN {state_list(FINISHED)}
""",
        # Search by target (management), newest first.
        f"""
CREATE NONCLUSTERED INDEX {n.obj("IX", "target")} ON {jobs} (target, seq)
""",
    )


def _v2(n: Names) -> tuple[str, ...]:
    workers = f"[{n.schema}].[{n.prefix}workers]"
    return (
        # Workers announce themselves (oddjob_core.worker_registry): one row per process.
        f"""
CREATE TABLE {workers} (
    id         nvarchar(200) COLLATE {BIN} NOT NULL,
    info       nvarchar(max) NOT NULL,
    expires_at datetime2(7) NOT NULL,
    CONSTRAINT [PK_{n.prefix}workers] PRIMARY KEY CLUSTERED (id),
    CONSTRAINT [CK_{n.prefix}workers_info] CHECK (ISJSON(info) = 1)
)
""",
        # Finished jobs per minute (the dashboard's throughput chart): succeeded and
        # failed rows only, so waiting and running rows never pay for it.
        f"""
CREATE NONCLUSTERED INDEX {n.obj("IX", "finished_at")} ON {n.jobs} (finished_at)
    INCLUDE (state, queue)
    WHERE state IN (N'succeeded', N'failed')
""",
    )


def _v3(n: Names) -> tuple[str, ...]:
    # Claims read ready rows only (#18): running and future scheduled rows no longer sit in
    # the index every claim and idle poll walks. Due scheduled/retrying rows are promoted
    # to ready through their own index, expired leases through the leases index.
    return (
        f"""
CREATE NONCLUSTERED INDEX {n.obj("IX", "ready")} ON {n.jobs} (queue, priority DESC, run_at, seq)
    WHERE state = N'ready'
""",
        f"""
CREATE NONCLUSTERED INDEX {n.obj("IX", "pending")} ON {n.jobs} (queue, run_at)
    WHERE state IN {state_list(PENDING)}
""",
        f"DROP INDEX {n.obj('IX', 'claim')} ON {n.jobs}",
    )


def _v4(n: Names) -> tuple[str, ...]:
    # Unique jobs (#15): at most one waiting or running job per (queue, key); a job that
    # finishes leaves the filtered index, which releases its key. kv holds schedule state.
    return (
        f"ALTER TABLE {n.jobs} ADD unique_key nvarchar(200) COLLATE {BIN} NULL",
        f"""
CREATE UNIQUE NONCLUSTERED INDEX {n.obj("UX", "unique_key")} ON {n.jobs} (queue, unique_key)
    WHERE unique_key IS NOT NULL AND state IN {state_list(CLAIMABLE)}
""",
        f"""
CREATE TABLE {n.kv} (
    name       nvarchar(200) COLLATE {BIN} NOT NULL,
    value      varbinary(max) NOT NULL,
    updated_at datetime2(7) NOT NULL,
    CONSTRAINT [PK_{n.prefix}kv] PRIMARY KEY CLUSTERED (name)
)
""",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs table, id and claim indexes", _v1),
    Migration(2, "workers table, finished_at index (dashboard)", _v2),
    Migration(3, "claims read ready rows only: ready and pending indexes", _v3),
    Migration(4, "unique job keys over live rows; kv table for schedule state", _v4, True),
)

LATEST = MIGRATIONS[-1].version


def bookkeeping(n: Names) -> tuple[str, ...]:
    """Create the schema and the migrations table when missing (idempotent)."""
    return (
        f"IF SCHEMA_ID(N'{n.schema}') IS NULL EXEC (N'CREATE SCHEMA {n.quoted_schema}')",
        f"""
IF OBJECT_ID(N'{n.migrations}', N'U') IS NULL
    CREATE TABLE {n.migrations} (
        version    int NOT NULL PRIMARY KEY,
        name       nvarchar(200) NOT NULL,
        applied_at datetime2(7) NOT NULL DEFAULT SYSUTCDATETIME()
    )
""".strip(),
    )


def applock(n: Names, timeout_ms: int = 60_000) -> str:
    """Take the migration lock for the rest of the transaction; selects sp_getapplock's result.

    ``EXEC`` does not open an implicit transaction (which is how ODBC runs
    with autocommit off), and a transaction-owned application lock needs
    one, so the batch opens it explicitly when none is open; the driver's
    commit ends it.
    """
    return f"""
IF @@TRANCOUNT = 0 BEGIN TRANSACTION;
DECLARE @result int;
EXEC @result = sp_getapplock @Resource = N'{n.lock_resource}', @LockMode = N'Exclusive',
    @LockOwner = N'Transaction', @LockTimeout = {int(timeout_ms)};
SELECT @result AS result
""".strip()


#: the session options filtered indexes need (Msg 1934 without them); classic sqlcmd and
#: some tools start with QUOTED_IDENTIFIER OFF, so the printed script sets them itself
SCRIPT_SET_OPTIONS = (
    "SET ANSI_NULLS, ANSI_PADDING, ANSI_WARNINGS, ARITHABORT, CONCAT_NULL_YIELDS_NULL, "
    "QUOTED_IDENTIFIER ON"
)


def script(n: Names) -> str:
    """Every migration as one sqlcmd script (what ``oddjob sqlserver migrate --print`` shows).

    Each migration is guarded by its row in the migrations table, so the script
    can be run against a schema at any version: ``sqlcmd -b -i script.sql``.
    """
    lines = [
        f"-- oddjob-sqlserver: {n.label()}, migrations 1..{LATEST}",
        "-- run with: sqlcmd -b -I -S <server> -d <database> -i <this file>",
        "-- (-I: QUOTED_IDENTIFIER ON, which classic sqlcmd leaves OFF; the SET below does it too)",
        f"{SCRIPT_SET_OPTIONS};",
        "SET NUMERIC_ROUNDABORT OFF;",
        "GO",
        "SET XACT_ABORT ON;",
        applock(n) + ";",
        "IF @result < 0 THROW 50000, N'oddjob: could not take the migration lock', 1;",
    ]
    lines += [s + ";" for s in bookkeeping(n)]
    lines.append("GO")
    for m in MIGRATIONS:
        lines.append(f"-- migration {m.version}: {m.name}")
        lines.append(f"IF NOT EXISTS (SELECT 1 FROM {n.migrations} WHERE version = {m.version})")
        lines.append("BEGIN")
        for statement in m.statements(n):
            if m.deferred:
                statement = "EXEC (N'" + statement.replace("'", "''") + "')"
            lines.append(_indent(statement) + ";")
        lines.append(
            f"    INSERT INTO {n.migrations} (version, name) VALUES ({m.version}, N'{m.name}');"
        )
        lines.append("END;")
        lines.append("GO")
    lines.append("COMMIT TRANSACTION;")
    lines.append("GO")
    return "\n".join(lines) + "\n"


def _indent(text: str) -> str:
    return "\n".join("    " + line if line else line for line in text.splitlines())
