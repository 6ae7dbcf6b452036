"""Every statement the storage can send, built from validated names, in one place.

Parameters are ODBC ``?`` markers (pyodbc's style). Object names come from
``Names`` (validated identifiers, ``[...]``-quoted); state names are the fixed
internal ones, spliced as ``N'...'`` literals so the filtered indexes match
(a filtered index is only used when the query's predicate on the filter
column is made of literals). Nothing else is ever spliced into SQL text.

``catalog`` enumerates every statement (all variants of the dynamic ones) so
the tests can check each against a T-SQL grammar without a server.

Fenced writes return ``OUTPUT inserted.seq`` instead of relying on the row
count: ``SET NOCOUNT ON`` (a server-wide default on some installations) makes
ODBC report -1 rows, and an outcome write must know whether it landed.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .claiming import claim_batch
from .migrations import (
    BIN,
    FINISHED,
    MIGRATIONS,
    WAITING,
    applock,
    bookkeeping,
    state_list,
)
from .names import Names

#: rows one purge statement deletes; below SQL Server's lock escalation threshold (5000)
PURGE_BATCH = 1000

#: columns ``rows.record_from`` expects, in order
RECORD_COLUMNS = (
    "seq, id, queue, target, priority, run_at, attempts, created_at, envelope, errors, state, "
    "updated_at, finished_at, result, lease_owner, lease_expires_at"
)

SEARCH_FILTERS = ("queue", "states", "target", "created_after", "created_before", "arguments")


def session_setup(lock_timeout_ms: int) -> str:
    """Run once on every new connection: the SET options filtered indexes need, and bounded lock waits.

    Filtered indexes are only used (and writes to their table only allowed)
    with ANSI_NULLS, ANSI_PADDING, ANSI_WARNINGS, ARITHABORT,
    CONCAT_NULL_YIELDS_NULL, QUOTED_IDENTIFIER on and NUMERIC_ROUNDABORT off;
    FreeTDS does not set all of them by default. XACT_ABORT makes any error
    roll the whole transaction back instead of leaving it half applied.
    """
    return (
        "SET ANSI_NULLS, ANSI_PADDING, ANSI_WARNINGS, ARITHABORT, CONCAT_NULL_YIELDS_NULL, "
        "QUOTED_IDENTIFIER, XACT_ABORT ON; SET NUMERIC_ROUNDABORT, NOCOUNT OFF; "
        f"SET LOCK_TIMEOUT {int(lock_timeout_ms)}; SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
    )


@dataclass(frozen=True)
class Statements:
    """The SQL text of every operation for one installation (schema + table prefix)."""

    names: Names

    # -- producing ---------------------------------------------------------------

    @functools.cached_property
    def insert(self) -> str:
        """Insert a batch given as ONE parameter: a JSON array of ``{"r", "c", "e"}`` items.

        ``e`` is the envelope, ``r``/``c`` its run_at/created_at as naive UTC
        ISO strings (unambiguous for datetime2 whatever the session language).
        ``ORDER BY`` the array index makes ``seq`` follow the batch order (SQL
        Server guarantees identity values follow the ORDER BY of INSERT ... SELECT).
        A duplicate id is skipped by the id index's IGNORE_DUP_KEY; a job whose
        ``key`` a live job of its queue holds fails the unique-key index (``add_unique``
        checks first).
        """
        return f"""
INSERT INTO {self.names.jobs} (id, queue, target, state, priority, run_at, attempts, envelope,
                          errors, created_at, updated_at, unique_key)
SELECT j.id, j.queue, j.target,
       CASE WHEN j.run_at <= SYSUTCDATETIME() THEN N'ready' ELSE N'scheduled' END,
       COALESCE(j.priority, 0), j.run_at, COALESCE(j.attempts, 0), j.envelope,
       COALESCE(j.errors, N'[]'), j.created_at, SYSUTCDATETIME(), j.unique_key
FROM OPENJSON(CONVERT(nvarchar(max), ?)) AS a
CROSS APPLY OPENJSON(a.[value]) WITH (
    id         uniqueidentifier '$.e.id',
    queue      nvarchar(100)    '$.e.queue',
    target     nvarchar(400)    '$.e.target',
    priority   int              '$.e.priority',
    attempts   int              '$.e.attempts',
    run_at     datetime2(7)     '$.r',
    created_at datetime2(7)     '$.c',
    envelope   nvarchar(max)    '$.e' AS JSON,
    errors     nvarchar(max)    '$.e.errors' AS JSON,
    unique_key nvarchar(200)    '$.e.key'
) AS j
ORDER BY CONVERT(int, a.[key])
""".strip()

    # -- consuming ---------------------------------------------------------------

    @functools.cached_property
    def claim(self) -> str:
        """Promote due rows, recover expired leases, claim ready rows: one batch (``claiming``).

        Each of its three statements reads one filtered index through a seek pinned
        with ``WITH (UPDLOCK, READPAST, ROWLOCK, FORCESEEK)``. Parameters:
        ``claiming.CLAIM_PARAMETERS``.
        """
        return claim_batch(self.names)

    def _fenced(self, assignments: str) -> str:
        """An outcome write that lands only while the claim's token still owns the running row."""
        return f"""
UPDATE {self.names.jobs}
SET {assignments}
OUTPUT inserted.seq
WHERE id = ? AND token = ? AND state = N'running'
""".strip()

    @functools.cached_property
    def complete(self) -> str:
        """Parameters: result JSON (or NULL), id, token."""
        return self._fenced(
            "state = N'succeeded', result = ?, updated_at = SYSUTCDATETIME(), "
            "finished_at = SYSUTCDATETIME(), lease_owner = NULL, lease_expires_at = NULL"
        )

    @functools.cached_property
    def retry(self) -> str:
        """Parameters: run_at (UTC), errors JSON array, id, token."""
        return self._fenced(
            "state = N'retrying', run_at = ?, errors = ?, updated_at = SYSUTCDATETIME(), "
            "lease_owner = NULL, lease_expires_at = NULL"
        )

    @functools.cached_property
    def fail(self) -> str:
        """Parameters: errors JSON array, id, token."""
        return self._fenced(
            "state = N'failed', errors = ?, updated_at = SYSUTCDATETIME(), "
            "finished_at = SYSUTCDATETIME(), lease_owner = NULL, lease_expires_at = NULL"
        )

    @functools.cached_property
    def landed(self) -> str:
        """Did an earlier attempt of a fenced write commit before its connection broke?

        Parameters: id, token, state. The token stays on a finished row for this check.
        """
        return f"SELECT 1 FROM {self.names.jobs} WHERE id = ? AND token = ? AND state = ?"

    def _by_claims(self, assignments: str) -> str:
        """A write to many claimed rows; ONE parameter: JSON array of ``{"id", "token"}``."""
        return f"""
UPDATE j
SET {assignments}
OUTPUT inserted.id
FROM {self.names.jobs} AS j
INNER JOIN OPENJSON(CONVERT(nvarchar(max), ?)) WITH (id uniqueidentifier '$.id', token uniqueidentifier '$.token') AS k
    ON j.id = k.id AND j.token = k.token
WHERE j.state = N'running'
""".strip()

    @functools.cached_property
    def complete_many(self) -> str:
        """Many successes at once; ONE parameter: JSON array of ``{"id", "token", "result"}``.

        ``result`` is the result's JSON *text* as a string (or null): ``AS JSON``
        would turn a scalar result (``3``, ``"done"``) into NULL.
        """
        return f"""
UPDATE j
SET state = N'succeeded', result = k.result, updated_at = SYSUTCDATETIME(),
    finished_at = SYSUTCDATETIME(), lease_owner = NULL, lease_expires_at = NULL
OUTPUT inserted.id
FROM {self.names.jobs} AS j
INNER JOIN OPENJSON(CONVERT(nvarchar(max), ?)) WITH (id uniqueidentifier '$.id', token uniqueidentifier '$.token', result nvarchar(max) '$.result') AS k
    ON j.id = k.id AND j.token = k.token
WHERE j.state = N'running'
""".strip()

    @functools.cached_property
    def completed(self) -> str:
        """Which of these claims' rows are already succeeded (a write whose reply was lost)."""
        return f"""
SELECT j.id
FROM {self.names.jobs} AS j
INNER JOIN OPENJSON(CONVERT(nvarchar(max), ?)) WITH (id uniqueidentifier '$.id', token uniqueidentifier '$.token') AS k
    ON j.id = k.id AND j.token = k.token
WHERE j.state = N'succeeded'
""".strip()

    @functools.cached_property
    def release(self) -> str:
        """Give claims back unstarted: due now, this attempt not counted."""
        return self._by_claims(
            "state = N'ready', attempts = CASE WHEN j.attempts > 0 THEN j.attempts - 1 ELSE 0 END, "
            "lease_owner = NULL, lease_expires_at = NULL, updated_at = SYSUTCDATETIME()"
        )

    @functools.cached_property
    def extend(self) -> str:
        """Renew leases; parameters: lease in milliseconds, then the claims JSON."""
        return self._by_claims(
            "lease_expires_at = DATEADD(millisecond, CONVERT(int, ?), SYSUTCDATETIME())"
        )

    @functools.cached_property
    def next_due(self) -> str:
        """Earliest run_at of a waiting job and earliest lease expiry; parameters: queue, queue.

        READPAST: an idle worker's poll must never wait on rows an open
        transaction holds (a caller's transactional enqueue, a claim): those
        rows are not committed or are being claimed, so skipping them is right.
        Without READ_COMMITTED_SNAPSHOT the management reads (get, search,
        counts) can still wait on such rows, up to lock_timeout.
        """
        jobs = self.names.jobs
        return f"""
SELECT (SELECT MIN(run_at) FROM {jobs} WITH (READPAST)
        WHERE queue = ? AND state IN {state_list(WAITING)}),
       (SELECT MIN(lease_expires_at) FROM {jobs} WITH (READPAST)
        WHERE queue = ? AND state = N'running')
""".strip()

    @functools.cached_property
    def compatibility_level(self) -> str:
        """The current database's name and compatibility level (OPENJSON needs 130+)."""
        return "SELECT name, compatibility_level FROM sys.databases WHERE database_id = DB_ID()"

    # -- management --------------------------------------------------------------

    @functools.cached_property
    def get(self) -> str:
        """Parameter: id."""
        return f"SELECT {RECORD_COLUMNS} FROM {self.names.jobs} WHERE id = ?"

    def counts(self, by_queue: bool) -> str:
        """Jobs per queue and state; with ``by_queue`` one parameter: the queue."""
        where = " WHERE queue = ?" if by_queue else ""
        return (
            f"SELECT queue, state, COUNT_BIG(*) FROM {self.names.jobs}{where} GROUP BY queue, state"
        )

    @functools.cached_property
    def cancel(self) -> str:
        """Parameter: id."""
        return f"""
UPDATE {self.names.jobs}
SET state = N'cancelled', updated_at = SYSUTCDATETIME(), finished_at = SYSUTCDATETIME(),
    lease_owner = NULL, lease_expires_at = NULL
OUTPUT inserted.seq
WHERE id = ? AND state IN {state_list(WAITING)}
""".strip()

    @functools.cached_property
    def requeue(self) -> str:
        """Parameters: run_at (UTC) or NULL for now, the same again, id.

        The retry budget restarts; the errors of earlier attempts stay visible.
        """
        return f"""
UPDATE {self.names.jobs}
SET run_at = COALESCE(?, SYSUTCDATETIME()),
    state = CASE WHEN COALESCE(?, SYSUTCDATETIME()) <= SYSUTCDATETIME()
                 THEN N'ready' ELSE N'scheduled' END,
    attempts = 0, result = NULL, finished_at = NULL, token = NULL,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = SYSUTCDATETIME()
OUTPUT inserted.seq
WHERE id = ? AND state IN {state_list(FINISHED)}
""".strip()

    @functools.cached_property
    def delete(self) -> str:
        """Parameter: id. Any job but a running one (its worker holds the lease)."""
        return (
            f"DELETE FROM {self.names.jobs} OUTPUT deleted.seq WHERE id = ? AND state <> N'running'"
        )

    def purge(self, states: Sequence[str], older_than: bool, by_queue: bool) -> str:
        """Delete one batch of finished jobs; parameters: [older_than] [queue]."""
        chosen = tuple(s for s in FINISHED if s in states)
        if not chosen or len(chosen) != len(set(states)):
            raise ValueError(f"purge takes finished states only, got {list(states)}")
        conds = [f"state IN {state_list(chosen)}"]
        if older_than:
            conds.append("updated_at < ?")
        if by_queue:
            conds.append("queue = ?")
        return (
            f"DELETE TOP ({PURGE_BATCH}) FROM {self.names.jobs} WITH (ROWLOCK)\n"
            f"OUTPUT deleted.seq\nWHERE {' AND '.join(conds)}"
        )

    def search(self, filters: Sequence[str], n_states: int = 0, n_arguments: int = 0) -> str:
        """A page of jobs, newest (highest ``seq``) first, with the total of all matches.

        ``filters`` names the ``SEARCH_FILTERS`` in use. Parameters, in order:
        queue; one per state; target; created_after; created_before; per
        argument (key, JSON type, value text); then offset, limit.
        """
        where = self.search_where(filters, n_states, n_arguments)
        return (
            f"SELECT {RECORD_COLUMNS}, COUNT_BIG(*) OVER () AS total\n"
            f"FROM {self.names.jobs}{where}\n"
            "ORDER BY seq DESC\nOFFSET ? ROWS FETCH NEXT ? ROWS ONLY"
        )

    def search_count(self, filters: Sequence[str], n_states: int = 0, n_arguments: int = 0) -> str:
        """The number of matches alone (when the page is empty, e.g. past the end)."""
        where = self.search_where(filters, n_states, n_arguments)
        return f"SELECT COUNT_BIG(*) FROM {self.names.jobs}{where}"

    def search_where(self, filters: Sequence[str], n_states: int, n_arguments: int) -> str:
        """The WHERE clause of a search (empty without filters)."""
        unknown = set(filters) - set(SEARCH_FILTERS)
        if unknown:
            raise ValueError(f"unknown search filters {sorted(unknown)}")
        conds: list[str] = []
        if "queue" in filters:
            conds.append("queue = ?")
        if "states" in filters:
            if n_states < 1:
                raise ValueError("a states filter needs at least one state")
            conds.append(f"state IN ({', '.join('?' * n_states)})")
        if "target" in filters:
            conds.append("target = ?")
        if "created_after" in filters:
            conds.append("created_at >= ?")
        if "created_before" in filters:
            conds.append("created_at < ?")
        if "arguments" in filters:
            if n_arguments < 1:
                raise ValueError("an arguments filter needs at least one argument")
            # One EXISTS per argument: the top-level member with this key, this
            # JSON type (0 null, 1 string, 2 number, 3 bool, 4 array, 5 object)
            # and this value text, compared byte for byte (BIN2), not by the
            # database's (usually case-insensitive) collation.
            conds.extend(
                "EXISTS (SELECT 1 FROM OPENJSON(envelope, '$.arguments') AS a "
                f"WHERE a.[key] = ? COLLATE {BIN} AND a.[type] = ? "
                f"AND (a.[type] = 0 OR a.[value] = CONVERT(nvarchar(max), ?) COLLATE {BIN}))"
                for _ in range(n_arguments)
            )
        return ("\nWHERE " + "\n  AND ".join(conds)) if conds else ""

    # -- schema ------------------------------------------------------------------

    @functools.cached_property
    def migrations_table_exists(self) -> str:
        """1 when the migrations table exists (applied_version's first step)."""
        return f"SELECT CASE WHEN OBJECT_ID(N'{self.names.migrations}', N'U') IS NULL THEN 0 ELSE 1 END"

    @functools.cached_property
    def applied_versions(self) -> str:
        """Every applied migration version."""
        return f"SELECT version FROM {self.names.migrations}"

    @functools.cached_property
    def record_migration(self) -> str:
        """Parameters: version, name."""
        return f"INSERT INTO {self.names.migrations} (version, name) VALUES (?, ?)"

    def applock(self, timeout_ms: int = 60_000) -> str:
        """Serialize migrations of this installation (see ``migrations.applock``)."""
        return applock(self.names, timeout_ms)

    @functools.cached_property
    def bookkeeping(self) -> tuple[str, ...]:
        """Create the schema and migrations table when missing."""
        return bookkeeping(self.names)


@dataclass(frozen=True)
class Entry:
    """One statement of the catalog: a name saying which variant, the SQL, its ``?`` count."""

    name: str
    sql: str

    @functools.cached_property
    def parameters(self) -> int:
        """Number of ``?`` markers outside string literals and bracketed names."""
        return count_markers(self.sql)


def count_markers(sql: str) -> int:
    """Count ODBC ``?`` markers, skipping '...' literals and [...] identifiers."""
    count, i, n = 0, 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            i = sql.find("'", i + 1)
            while i != -1 and i + 1 < n and sql[i + 1] == "'":
                i = sql.find("'", i + 2)
            if i == -1:
                break
        elif ch == "[":
            i = sql.find("]", i + 1)
            if i == -1:
                break
        elif ch == "?":
            count += 1
        i += 1
    return count


def catalog(names: Names, lock_timeout_ms: int = 10_000) -> Iterator[Entry]:
    """Every statement the storage and CLI can send for ``names``, every variant once."""
    st = Statements(names)
    yield Entry("session_setup", session_setup(lock_timeout_ms))
    for attr in (
        "insert",
        "claim",
        "complete",
        "complete_many",
        "completed",
        "retry",
        "fail",
        "landed",
        "release",
        "extend",
        "next_due",
        "compatibility_level",
        "get",
        "cancel",
        "requeue",
        "delete",
        "migrations_table_exists",
        "applied_versions",
        "record_migration",
    ):
        yield Entry(attr, getattr(st, attr))
    yield Entry("applock", st.applock())
    for i, statement in enumerate(st.bookkeeping):
        yield Entry(f"bookkeeping[{i}]", statement)
    for by_queue in (False, True):
        yield Entry(f"counts(by_queue={by_queue})", st.counts(by_queue))
    for k in range(1, len(FINISHED) + 1):
        for states in itertools.combinations(FINISHED, k):
            for older, by_queue in itertools.product((False, True), repeat=2):
                yield Entry(
                    f"purge({','.join(states)}, older_than={older}, queue={by_queue})",
                    st.purge(states, older, by_queue),
                )
    for k in range(len(SEARCH_FILTERS) + 1):
        for filters in itertools.combinations(SEARCH_FILTERS, k):
            n_states = 2 if "states" in filters else 0
            n_args = 2 if "arguments" in filters else 0
            label = ",".join(filters) or "none"
            yield Entry(f"search({label})", st.search(filters, n_states, n_args))
            yield Entry(f"search_count({label})", st.search_count(filters, n_states, n_args))
    # the largest variants of the repeated parts once each
    yield Entry("search(states x7)", st.search(("states",), n_states=7))
    yield Entry("search(arguments x5)", st.search(("arguments",), n_arguments=5))
    for m in MIGRATIONS:
        for i, statement in enumerate(m.statements(names)):
            yield Entry(f"migration {m.version}[{i}]", statement)
    from .keyvalue import KeyValueStatements  # these import this module's neighbours: late
    from .unique import UniqueStatements
    from .workers import WorkerStatements

    for name, statement in (
        *WorkerStatements(names).catalog(),
        *KeyValueStatements(names).catalog(),
        *UniqueStatements(names, st.insert).catalog(),
    ):
        yield Entry(name, statement)
