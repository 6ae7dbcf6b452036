"""``PostgresStorage``: the storage contract on PostgreSQL, one statement per operation.

Claims lock rows with ``FOR UPDATE SKIP LOCKED`` so concurrent workers pass
each other instead of queueing on locks; each claim takes a fresh fencing
token from a sequence, and every outcome write is fenced by
``WHERE id = … AND token = … AND state = 'running'``. Partial indexes hold
only waiting and running rows, so finished history does not slow claims.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg.errors

from oddjob_core.clock import utcnow
from oddjob_core.errors import (
    ConfigError,
    EnqueueError,
    LeaseLost,
    StorageError,
    StorageUnavailable,
)
from oddjob_core.model import AttemptError, Claim, Envelope
from oddjob_core.poison import CorruptJob, check_route, describe
from oddjob_core.retention import RetentionSweeper
from oddjob_core.storage import (
    Capabilities,
    DelegatedManagement,
    Storage,
    complete_in_chunks,
)

from .database import Database
from .doctor import PostgresDoctor
from .keyvalue import PostgresKeyValue
from .listener import Listener
from .management import Management
from .migrations import LATEST, applied_version, migrate, quote
from .options import DEFAULT_SCHEMA, PostgresOptions, check_identifier, default_channel
from .rows import (
    MAX_ATTEMPTS,
    copy_rows,
    encode,
    envelope_from,
    insert_document,
    is_new,
)
from .statements import COPY_NEW_TYPES, Statements, render
from .unique import PostgresUniqueKeys
from .workers import PostgresAnnouncements

log = logging.getLogger("oddjob.postgres")

#: Batches at least this large go by COPY: its extra round trips (BEGIN, COPY, notify,
#: COMMIT) cost more than they save on fewer rows (the crossover: bench/RESULTS.md).
_COPY_FROM = 128
_COMPLETE_CHUNK = 500  # successes per UPDATE in complete_many


@functools.lru_cache(maxsize=64)
def statements(schema: str) -> Statements:
    """The rendered statements of a schema (cached: rendering is string work)."""
    return render(schema)


def add_in_transaction(
    connection: psycopg.Connection[Any],
    jobs: Sequence[Envelope],
    *,
    schema: str = DEFAULT_SCHEMA,
    notify_channel: str | None = None,
) -> None:
    """Enqueue ``jobs`` on the caller's own connection, inside the caller's transaction.

    Nothing is committed here: the jobs (and the wake-up notification) become
    visible when the caller commits, and vanish if it rolls back. Use the same
    ``schema`` and ``notify_channel`` as the workers' postgres options.
    """
    if not jobs:
        return
    check_identifier(schema, "schema")
    params = {
        "envelopes": insert_document(jobs),
        "channel": notify_channel or default_channel(schema),
    }
    try:
        connection.execute(statements(schema).insert, params)
    except psycopg.Error as exc:
        _raise_if_unstorable(exc)
        raise StorageError(
            f"adding {len(jobs)} job(s) to schema '{schema}' on the caller's connection failed: "
            f"{type(exc).__name__}: {str(exc).strip()}"
        ) from exc


class PostgresStorage(
    Storage,
    DelegatedManagement,
    PostgresAnnouncements,
    PostgresKeyValue,
    PostgresUniqueKeys,
    PostgresDoctor,
):
    """Jobs in one PostgreSQL table; thread-safe, shared by every thread of a worker process."""

    name = "postgres"
    capabilities = Capabilities(search_by_argument=True)

    def __init__(self, options: PostgresOptions | None = None) -> None:
        self.options = options or PostgresOptions()
        self.schema = self.options.schema
        self.channel = self.options.channel
        self.sql = statements(self.schema)
        self.database = Database(self.options)
        self._kv_init(self.database, quote(self.schema))
        self._unique_init(self.database, quote(self.schema), self.sql.insert, self.channel)
        self.management = Management(self.database, self.sql, self.channel)
        self.listener = Listener(
            self.options.listen_dsn or self.options.dsn,
            self.channel,
            self.database.target,
            self.options.application_name,
        )
        self.retention = RetentionSweeper(
            self,
            self.options.retention_days,
            self.options.failed_retention_days,
            where=f"schema '{self.schema}'",
        )
        try:
            self._prepare_schema()
        except BaseException:
            self.database.close()
            raise

    @property
    def target(self) -> str:
        """Where the jobs live, for messages: host, port, database, user (no password)."""
        return self.database.target

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled autocommit connection for your own SQL (``with storage.connection() as c:``).

        Open ``c.transaction()`` on it to enqueue with ``add(jobs, connection=c)``
        atomically with your own writes. jsonb values read on it come back as raw bytes.
        """
        return self.database.pool.connection()

    def _prepare_schema(self) -> None:
        if self.options.migrate_on_start:
            try:
                applied = self.database.run(
                    f"migrating schema '{self.schema}'", lambda c, _: migrate(c, self.schema)
                )
            except StorageError as exc:
                if isinstance(exc, StorageUnavailable):
                    raise
                raise StorageError(
                    f"{exc}. If this role may not create or alter schema '{self.schema}', run "
                    "`oddjob postgres migrate` as one that may (or apply the SQL of "
                    "`oddjob postgres migrate --print`), then set migrate_on_start = false"
                ) from exc.__cause__
            for m in applied:
                log.info("applied migration %d (%s) to schema '%s'", m.version, m.name, self.schema)
            return
        version = self.database.run(
            "checking the schema version", lambda c, _: applied_version(c, self.schema)
        )
        if version < LATEST:
            raise ConfigError(
                f"schema '{self.schema}' on {self.target} is at migration {version} but "
                f"oddjob-postgres needs migration {LATEST}; run `oddjob postgres migrate` "
                "(or set migrate_on_start = true in the postgres options)"
            )

    # -- producing ---------------------------------------------------------------

    def add(
        self, jobs: Sequence[Envelope], *, connection: psycopg.Connection[Any] | None = None
    ) -> None:
        """Store ``jobs`` in one transaction; with ``connection``, inside the caller's transaction.

        Re-adding an id already stored is a no-op, so retrying after a lost
        connection cannot duplicate a job. Large batches of new jobs go by COPY,
        the rest by one insert statement (one round trip).
        """
        if not jobs:
            return
        if connection is not None:
            add_in_transaction(connection, jobs, schema=self.schema, notify_channel=self.channel)
            return
        by_copy = len(jobs) >= _COPY_FROM and all(is_new(job) for job in jobs)

        def write(conn: psycopg.Connection[Any], retried: bool) -> None:
            # After a lost connection the COPY may have landed: only the insert skips ids.
            if by_copy and not retried:
                try:
                    self.copy_new(conn, jobs)
                    return
                except psycopg.errors.UniqueViolation:
                    pass  # an id is stored already (rolled back): the insert skips it
            params = {"envelopes": insert_document(jobs), "channel": self.channel}
            conn.execute(self.sql.insert, params)

        try:
            self.database.run(f"adding {len(jobs)} job(s)", write)
        except StorageError as exc:
            _raise_if_unstorable(exc.__cause__)
            raise

    def copy_new(self, conn: psycopg.Connection[Any], jobs: Sequence[Envelope]) -> None:
        """Add never-attempted jobs by binary COPY and wake workers, in one transaction."""
        now = utcnow()
        rows = copy_rows(jobs, now)
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(self.sql.copy_new) as copy:
                copy.set_types(COPY_NEW_TYPES)
                for row in rows:
                    copy.write_row(row)
            due_now = sorted({row[1] for row in rows if row[3] == "ready"})
            if due_now:
                cursor.execute(self.sql.notify_queues, {"channel": self.channel, "queues": due_now})

    # -- consuming ---------------------------------------------------------------

    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        if limit <= 0:
            return []
        self.retention.maybe_sweep()
        params = {"queue": queue, "limit": limit, "lease": lease, "owner": owner}
        for _ in range(10):  # only loops while whole batches turn out corrupt
            rows = self.database.run(
                f"claiming from queue '{queue}'",
                # binary results: cheaper to produce and to parse than text
                lambda c, _: c.execute(self.sql.claim, params, binary=True).fetchall(),
            )
            claims: list[Claim] = []
            corrupt: list[tuple[Any, ...]] = []
            for row in rows:
                # the rows are leased and committed: nothing here may raise (poison rule)
                (job_id, raw, attempts, run_at, errors, token, expires, recovered) = row
                what = f"job {job_id} in {self.schema}.jobs"
                try:
                    env = envelope_from(raw, attempts, run_at, errors)
                    check_route(env, queue=queue, job_id=job_id, what=what)
                    claims.append(
                        Claim(
                            job=env,
                            token=str(token),
                            owner=owner,
                            lease_expires_at=expires.astimezone(UTC),
                            recovered=bool(recovered),
                        )
                    )
                except CorruptJob as exc:
                    corrupt.append((job_id, token, attempts, str(exc)))
                except Exception as exc:  # RecursionError, a bad column: anything about this row
                    corrupt.append((job_id, token, attempts, f"{what} cannot be decoded: "
                                    f"{describe(exc)}"))  # fmt: skip
            if corrupt:
                self._fail_corrupt(corrupt)
            if claims or not corrupt:
                claims.sort(
                    key=lambda c: (not c.recovered, -c.job.priority, c.job.run_at, c.job.id)
                )
                return claims
        return []

    def _fail_corrupt(self, rows: list[tuple[Any, ...]]) -> None:
        """Fail jobs whose stored envelope cannot be decoded, with the decode error; never run them."""
        now = utcnow()
        params = []
        for job_id, token, attempts, message in rows:
            log.error("%s; failing it", message)
            error = AttemptError(
                attempt=min(attempts, MAX_ATTEMPTS),
                type=CorruptJob.type_name,
                message=f"{message}; it was failed without running",
                at=now,
            )
            params.append({"id": job_id, "token": token, "error": encode([error])})

        def write(conn: psycopg.Connection[Any], _: bool) -> None:
            with conn.cursor() as cur:
                cur.executemany(self.sql.fail, params)

        try:
            self.database.run("failing undecodable jobs", write)
        except StorageError as exc:  # the good claims of this batch must still be handed out
            log.error("could not fail %d undecodable job(s): %s; they are retried after their "
                      "lease", len(rows), exc)  # fmt: skip

    def _fenced_by_token(
        self,
        job_id: uuid.UUID,
        token: int | None,
        what: str,
        statement: str,
        params: dict[str, Any],
        state: str,
        *,
        counted: bool = False,
    ) -> None:
        params = {**params, "id": job_id, "token": token}

        def write(conn: psycopg.Connection[Any], retried: bool) -> bool:
            cur = conn.execute(statement, params)
            if counted:
                row = cur.fetchone()
                changed = int(row[0]) if row else 0
            else:
                changed = cur.rowcount
            if changed:
                return True
            if retried:  # the first attempt may have landed before the connection broke
                landed = {"id": job_id, "token": token, "state": state}
                return conn.execute(self.sql.landed, landed).fetchone() is not None
            return False

        if token is None or not self.database.run(what, write):
            raise LeaseLost(
                f"job {job_id} is no longer leased by this claim (its lease expired and "
                "another worker claimed it, or it was finished, cancelled or purged); "
                f"{what.split(' of job')[0]} not recorded"
            )

    def complete(self, claim: Claim, result: Any = None) -> None:
        """Mark succeeded with one fenced UPDATE (the engine batches through ``complete_many``)."""
        error = self.complete_many([(claim, result)]).get(claim.job.id)
        if error is not None:
            raise error

    def complete_many(self, done: Sequence[tuple[Claim, Any]]) -> dict[uuid.UUID, StorageError]:
        """Every success of the batch in one fenced UPDATE (one round trip, one commit)."""
        return complete_in_chunks(done, _token, self._complete_chunk, chunk_size=_COMPLETE_CHUNK)

    def _complete_chunk(self, items: list[tuple[uuid.UUID, int, Any]]) -> set[uuid.UUID]:
        """One UPDATE for many completes; the ids whose claim still owned the row."""
        params = {
            "ids": [i[0] for i in items],
            "tokens": [i[1] for i in items],
            "results": encode({str(i[0]): i[2] for i in items if i[2] is not None}),
        }

        def write(conn: psycopg.Connection[Any], retried: bool) -> set[uuid.UUID]:
            done = {row[0] for row in conn.execute(self.sql.complete, params)}
            if retried and len(done) < len(items):  # an earlier attempt may have landed
                done.update(row[0] for row in conn.execute(self.sql.completed, params))
            return done

        return self.database.run(f"recording success of {len(items)} job(s)", write)

    def retry(self, claim: Claim, run_at: datetime, error: AttemptError) -> None:
        self._fenced_by_token(
            claim.job.id,
            _token(claim),
            f"scheduling a retry of job {claim.job.id}",
            self.sql.retry,
            {"run_at": run_at, "error": encode([error]), "channel": self.channel},
            "retrying",
            counted=True,
        )

    def fail(self, claim: Claim, error: AttemptError) -> None:
        self._fenced_by_token(
            claim.job.id,
            _token(claim),
            f"recording failure of job {claim.job.id}",
            self.sql.fail,
            {"error": encode([error])},
            "failed",
        )

    def release(self, claims: Sequence[Claim]) -> None:
        pairs = [(c.job.id, t) for c in claims if (t := _token(c)) is not None]
        if not pairs:
            return
        params = {
            "ids": [p[0] for p in pairs],
            "tokens": [p[1] for p in pairs],
            "channel": self.channel,
        }
        self.database.run(
            f"releasing {len(pairs)} job(s)",
            lambda c, _: c.execute(self.sql.release, params).fetchone(),
        )

    def extend(self, claims: Sequence[Claim], lease: float) -> set[uuid.UUID]:
        wanted = {c.job.id for c in claims}
        pairs = [(c.job.id, t) for c in claims if (t := _token(c)) is not None]
        if not pairs:
            return wanted
        params = {"ids": [p[0] for p in pairs], "tokens": [p[1] for p in pairs], "lease": lease}
        kept = self.database.run(
            f"renewing {len(pairs)} lease(s)",
            lambda c, _: c.execute(self.sql.extend, params).fetchall(),
        )
        return wanted - {row[0] for row in kept}

    def next_due(self, queue: str) -> datetime | None:
        row = self.database.run(
            f"looking up the next due job of queue '{queue}'",
            lambda c, _: c.execute(self.sql.next_due, {"queue": queue}).fetchone(),
        )
        return row[0].astimezone(UTC) if row and row[0] is not None else None

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> None:
        """Sleep until a NOTIFY says one of ``queues`` has work due now, or ``timeout`` passes."""
        self.listener.wait(queues, timeout)

    def close(self) -> None:
        self.listener.close()
        self.database.close()

    def __repr__(self) -> str:
        return f"PostgresStorage({self.target}, schema={self.schema!r})"


def _raise_if_unstorable(exc: BaseException | None) -> None:
    """Turn "jsonb cannot hold this value" into an ``EnqueueError`` that names the fix."""
    if isinstance(exc, psycopg.errors.UntranslatableCharacter):
        raise EnqueueError(
            "job arguments contain a NUL character (\\u0000), which PostgreSQL jsonb cannot "
            "store; pass such data as bytes (stored base64-encoded) or strip the NULs"
        ) from exc


def _token(claim: Claim) -> int | None:
    """The claim's fencing token as stored (None: not one of ours, so it owns nothing)."""
    try:
        return int(claim.token)
    except ValueError:
        return None


__all__ = ["PostgresStorage", "add_in_transaction"]
