"""``SqlServerStorage``: the storage contract on SQL Server, one statement per operation.

Claims lease rows with ``UPDLOCK, READPAST, ROWLOCK`` through an updatable
CTE, so concurrent workers pass each other's locked rows instead of waiting
on them; each claim sets a fresh ``NEWID()`` fencing token, and every outcome
write is fenced by ``WHERE id = ? AND token = ? AND state = 'running'``.
Filtered indexes hold only claimable rows, so finished history does not slow
claims down. See docs/sqlserver.md for the design.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import pyodbc  # type: ignore[import-not-found,unused-ignore]  # its .pyi is not PEP 561 packaged

from oddjob_core.clock import utcnow
from oddjob_core.errors import ConfigError, LeaseLost, StorageError, StorageUnavailable
from oddjob_core.model import AttemptError, Claim, Envelope
from oddjob_core.poison import CorruptJob, check_route, decode_stored, describe
from oddjob_core.retention import RetentionSweeper
from oddjob_core.storage import (
    Capabilities,
    DelegatedManagement,
    Storage,
    complete_in_chunks,
)

from .checks import check_not_newer
from .claiming import claim_parameters, output_rows
from .database import Database, message
from .doctor import SqlServerDoctor
from .keyvalue import SqlServerKeyValue
from .management import Management
from .migrations import LATEST
from .names import Names
from .odbc import scrub
from .options import DEFAULT_SCHEMA, MAX_LEASE_SECONDS, SqlServerOptions
from .parameters import declare_document_parameter
from .retention import RetentionPurge
from .rows import (
    MAX_OWNER,
    as_uuid,
    claims_document,
    encode,
    envelope_from,
    from_db,
    insert_document,
    to_db,
)
from .schema import applied_version, check_database, migrate
from .statements import Statements
from .unique import SqlServerUniqueKeys
from .workers import SqlServerAnnouncements

log = logging.getLogger("oddjob.sqlserver")

#: envelopes per insert statement: bounds the size of the one JSON parameter
INSERT_CHUNK = 1000
_COMPLETE_CHUNK = 500  # successes per UPDATE in complete_many


def add_in_transaction(
    connection: pyodbc.Connection,
    jobs: Sequence[Envelope],
    *,
    schema: str = DEFAULT_SCHEMA,
    table_prefix: str = "",
) -> None:
    """Enqueue ``jobs`` on the caller's own pyodbc connection, inside its open transaction.

    Nothing is committed here: the jobs exist when the caller commits and
    vanish if it rolls back, together with the business data written in the
    same transaction. The connection must have autocommit off (pyodbc's
    default). Use the same ``schema`` and ``table_prefix`` as the workers.
    """
    if not jobs:
        return
    if connection.autocommit:
        raise ConfigError(
            "add_in_transaction needs a connection with autocommit off (pyodbc's default): "
            "with autocommit on, each job would be committed on its own, outside your transaction"
        )
    sql = Statements(Names(schema, table_prefix)).insert
    cursor = connection.cursor()
    try:
        for start in range(0, len(jobs), INSERT_CHUNK):
            declare_document_parameter(cursor)
            cursor.execute(sql, insert_document(jobs[start : start + INSERT_CHUNK]))
    except pyodbc.Error as exc:
        raise StorageError(
            f"adding {len(jobs)} job(s) to {Names(schema, table_prefix).label()} on "
            f"{_connection_target(connection)} (the caller's connection) failed: "
            f"{scrub(message(exc).strip())}"
        ) from exc
    finally:
        cursor.close()


def _connection_target(connection: pyodbc.Connection) -> str:
    """``SQL Server x, database y`` of a live connection, for messages."""
    try:
        server = connection.getinfo(pyodbc.SQL_SERVER_NAME)
        database = connection.getinfo(pyodbc.SQL_DATABASE_NAME)
    except pyodbc.Error:
        return "SQL Server"
    return f"SQL Server {server}, database {database}"


class SqlServerStorage(
    Storage,
    DelegatedManagement,
    SqlServerAnnouncements,
    SqlServerDoctor,
    SqlServerKeyValue,
    SqlServerUniqueKeys,
):
    """Jobs in one SQL Server table; thread-safe, shared by every thread of a worker process."""

    name = "sqlserver"
    capabilities = Capabilities(search_by_argument=True)

    def __init__(self, options: SqlServerOptions | None = None) -> None:
        self.options = options or SqlServerOptions()
        self.names = Names(self.options.schema, self.options.table_prefix)
        self.sql = Statements(self.names)
        self.database = Database(self.options)
        self.management = Management(self.database, self.sql, self.names)
        self._closed = threading.Event()
        self.retention = RetentionSweeper(
            RetentionPurge(self),
            self.options.retention_days,
            self.options.failed_retention_days,
            where=str(self.names.jobs),
        )
        try:
            self._prepare_schema()
        except BaseException:
            self.database.close()
            raise

    @property
    def target(self) -> str:
        """Where the jobs live, for messages: server, database, user (no password)."""
        return self.database.target

    @contextlib.contextmanager
    def connection(self) -> Iterator[pyodbc.Connection]:
        """A pooled connection (autocommit off) for your own SQL; commit it yourself.

        ``with storage.connection() as conn:`` write your rows, call
        ``storage.add(jobs, connection=conn)``, then ``conn.commit()``.
        Whatever is not committed when the block ends (normally or by an
        exception) is rolled back, and the connection is closed rather than
        pooled (it may carry the caller's session state).
        """
        # discarded afterwards: the caller may have changed its isolation level, SET options
        # or left temp tables, none of which the next pooled use must inherit
        with self.database.pool.connection(discard=True) as conn:
            conn.autocommit = False  # pooled connections run in autocommit mode
            try:
                yield conn
            finally:
                conn.rollback()

    def _prepare_schema(self) -> None:
        label = self.names.label()
        if self.options.migrate_on_start:
            try:
                applied = self.database.run(
                    f"migrating {label}",
                    lambda cur, _: migrate(cur, self.names, target=self.target),
                    atomic=True,
                )
            except StorageError as exc:
                if isinstance(exc, StorageUnavailable):
                    raise
                raise StorageError(
                    f"{exc}. If this login may not create tables in {label}, run "
                    "`oddjob sqlserver migrate` as one that may (or apply the script of "
                    "`oddjob sqlserver migrate --print` with sqlcmd), then set "
                    "migrate_on_start = false"
                ) from exc.__cause__
            for m in applied:
                log.info("applied migration %d (%s) to %s", m.version, m.name, label)
            return

        def read_version(cur: pyodbc.Cursor, _: bool) -> int:
            check_database(cur, self.names, self.target)
            return applied_version(cur, self.names)

        version = self.database.run("checking the schema version", read_version)
        check_not_newer(version, label, self.target)
        if version < LATEST:
            raise ConfigError(
                f"{label} on {self.target} is at migration {version} but oddjob-sqlserver "
                f"needs migration {LATEST}; run `oddjob sqlserver migrate` (or set "
                "migrate_on_start = true in the sqlserver options)"
            )

    # -- producing ---------------------------------------------------------------

    def add(self, jobs: Sequence[Envelope], *, connection: pyodbc.Connection | None = None) -> None:
        """Store ``jobs`` in one transaction; with ``connection``, inside the caller's transaction.

        The batch travels as one JSON parameter per ``INSERT_CHUNK`` jobs.
        Re-adding an id already stored is a no-op, so retrying after a lost
        connection cannot duplicate a job.
        """
        if not jobs:
            return
        if connection is not None:
            add_in_transaction(
                connection, jobs, schema=self.names.schema, table_prefix=self.names.prefix
            )
            return
        documents = [
            insert_document(jobs[start : start + INSERT_CHUNK])
            for start in range(0, len(jobs), INSERT_CHUNK)
        ]

        def write(cur: pyodbc.Cursor, _: bool) -> None:
            for document in documents:
                declare_document_parameter(cur)
                cur.execute(self.sql.insert, document)

        # one chunk is one statement (its own transaction); more must commit together
        self.database.run(f"adding {len(jobs)} job(s)", write, atomic=len(documents) > 1)

    # -- consuming ---------------------------------------------------------------

    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        if limit <= 0:
            return []
        self.retention.maybe_sweep()
        lease = self.options.lease or lease
        lease_ms = max(1, round(min(lease, MAX_LEASE_SECONDS) * 1000))
        owner = owner[:MAX_OWNER]
        params = claim_parameters(queue, limit, owner, lease_ms)
        for _ in range(10):  # only loops while whole batches turn out corrupt
            rows = self.database.run(
                f"claiming from queue '{queue}'",
                lambda cur, _: output_rows(cur.execute(self.sql.claim, *params)),
            )
            claims: list[tuple[int, Claim]] = []
            corrupt: list[tuple[uuid.UUID, uuid.UUID, int, str]] = []
            for row in rows:
                # the rows are leased and committed: nothing here may raise (poison rule)
                seq, job_id, raw, attempts, run_at, errors, token, expires, previous = row
                what = f"stored job {job_id} in {self.names.jobs}"
                try:
                    env = decode_stored(
                        lambda r: envelope_from(r, attempts, run_at, errors),  # noqa: B023
                        raw,
                        what=what,
                    )
                    check_route(env, queue=queue, job_id=as_uuid(job_id), what=what)
                    expires_at = from_db(expires)
                    assert expires_at is not None
                    claim = Claim(
                        job=env,
                        token=str(as_uuid(token)),
                        owner=owner,
                        lease_expires_at=expires_at,
                        recovered=previous is not None,  # its expired lease, kept by recovery
                    )
                except Exception as exc:  # CorruptJob, or anything else about this one row
                    corrupt.append((as_uuid(job_id), as_uuid(token), attempts, describe(exc)))
                    continue
                claims.append((seq, claim))
            if corrupt:
                self._fail_corrupt(corrupt)
            if claims or not corrupt:
                # OUTPUT returns rows in no particular order: restore the claim order
                claims.sort(key=lambda sc: (-sc[1].job.priority, sc[1].job.run_at, sc[0]))
                return [c for _, c in claims]
        return []

    def _fail_corrupt(self, rows: list[tuple[uuid.UUID, uuid.UUID, int, str]]) -> None:
        """Fail jobs whose stored envelope cannot be decoded, with the decode error; never run them."""
        now = utcnow()
        params = []
        for job_id, token, attempts, text in rows:
            log.error("%s; failing it", text)
            error = AttemptError(
                attempt=attempts,
                type=CorruptJob.type_name,
                message=f"{text}; it was failed without running",
                at=now,
            )
            params.append((encode([error]), job_id, token))

        def write(cur: pyodbc.Cursor, _: bool) -> None:
            for p in params:
                cur.execute(self.sql.fail, *p).fetchall()

        try:
            self.database.run("failing undecodable jobs", write)
        except StorageError as exc:  # the good claims of this batch must still be handed out
            log.error("could not fail %d undecodable job(s): %s; they are retried after their "
                      "lease", len(rows), exc)  # fmt: skip

    def _fenced(
        self, claim: Claim, what: str, statement: str, params: Sequence[Any], state: str
    ) -> None:
        """Run an outcome write fenced by the claim's token; ``LeaseLost`` when it matched no row."""
        token = _token(claim)
        job_id = claim.job.id

        def write(cur: pyodbc.Cursor, retried: bool) -> bool:
            if cur.execute(statement, *params, job_id, token).fetchall():
                return True
            if retried:  # the first attempt may have committed before the connection broke
                return bool(cur.execute(self.sql.landed, job_id, token, state).fetchall())
            return False

        if token is None or not self.database.run(what, write):
            raise LeaseLost(
                f"job {job_id} is no longer leased by this claim (its lease expired and "
                "another worker claimed it, or it was finished, cancelled or purged); "
                f"{what.split(' of job')[0]} not recorded"
            )

    def complete(self, claim: Claim, result: Any = None) -> None:
        self._fenced(
            claim,
            f"recording success of job {claim.job.id}",
            self.sql.complete,
            (None if result is None else encode(result),),
            "succeeded",
        )

    def complete_many(self, done: Sequence[tuple[Claim, Any]]) -> dict[uuid.UUID, StorageError]:
        """Every success of the batch in one fenced UPDATE (one round trip, one commit)."""

        def write(chunk: list[tuple[uuid.UUID, uuid.UUID, Any]]) -> set[uuid.UUID]:
            document = encode(
                [
                    {"id": str(i), "token": str(t), "result": None if r is None else encode(r)}
                    for i, t, r in chunk
                ]
            )

            def run(cur: pyodbc.Cursor, retried: bool) -> set[uuid.UUID]:
                declare_document_parameter(cur)
                landed = {as_uuid(r[0]) for r in cur.execute(self.sql.complete_many, document)}
                if retried:  # an earlier attempt may have committed before its connection broke
                    declare_document_parameter(cur)
                    landed |= {as_uuid(r[0]) for r in cur.execute(self.sql.completed, document)}
                return landed

            return self.database.run(f"recording success of {len(chunk)} jobs", run)

        return complete_in_chunks(done, _token, write, chunk_size=_COMPLETE_CHUNK)

    def retry(self, claim: Claim, run_at: datetime, error: AttemptError) -> None:
        self._fenced(
            claim,
            f"scheduling a retry of job {claim.job.id}",
            self.sql.retry,
            (to_db(run_at), encode([*claim.job.errors, error])),
            "retrying",
        )

    def fail(self, claim: Claim, error: AttemptError) -> None:
        self._fenced(
            claim,
            f"recording failure of job {claim.job.id}",
            self.sql.fail,
            (encode([*claim.job.errors, error]),),
            "failed",
        )

    def release(self, claims: Sequence[Claim]) -> None:
        pairs = [(c.job.id, t) for c in claims if (t := _token(c)) is not None]
        if not pairs:
            return
        document = claims_document(pairs)
        self.database.run(
            f"releasing {len(pairs)} job(s)",
            lambda cur, _: cur.execute(self.sql.release, document).fetchall(),
        )

    def extend(self, claims: Sequence[Claim], lease: float) -> set[uuid.UUID]:
        wanted = {c.job.id for c in claims}
        pairs = [(c.job.id, t) for c in claims if (t := _token(c)) is not None]
        if not pairs:
            return wanted
        lease = self.options.lease or lease
        lease_ms = max(1, round(min(lease, MAX_LEASE_SECONDS) * 1000))
        document = claims_document(pairs)
        kept = self.database.run(
            f"renewing {len(pairs)} lease(s)",
            lambda cur, _: cur.execute(self.sql.extend, lease_ms, document).fetchall(),
        )
        return wanted - {as_uuid(row[0]) for row in kept}

    def next_due(self, queue: str) -> datetime | None:
        row = self.database.run(
            f"looking up the next due job of queue '{queue}'",
            lambda cur, _: cur.execute(self.sql.next_due, queue, queue).fetchone(),
        )
        if not row:
            return None
        times = [t for t in (from_db(row[0]), from_db(row[1])) if t is not None]
        return min(times, default=None)

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Sleep ``timeout`` (at most ``poll_interval``): SQL Server offers no cheap push wake-up."""
        if self.options.poll_interval is not None:
            timeout = min(timeout, self.options.poll_interval)
        self._closed.wait(max(0.0, timeout))

    def close(self) -> None:
        self._closed.set()
        self.database.close()

    def __repr__(self) -> str:
        return f"SqlServerStorage({self.target}, {self.names.label()})"


def _token(claim: Claim) -> uuid.UUID | None:
    """The claim's fencing token as stored (None: not one of ours, so it owns nothing)."""
    try:
        return uuid.UUID(claim.token)
    except ValueError:
        return None


__all__ = ["SqlServerStorage", "add_in_transaction"]
