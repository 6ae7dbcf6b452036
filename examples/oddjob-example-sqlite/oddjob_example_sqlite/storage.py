"""``SqliteStorage``: the oddjob storage contract on one SQLite file, stdlib ``sqlite3`` only.

How each contract point is met (``oddjob_core/storage.py`` is the contract):

* **One row per job.** The ``envelope`` column holds the job as msgspec JSON
  (readable with the ``sqlite3`` shell); the scalar columns beside it
  (queue, state, priority, run_at, lease...) exist to be indexed and filtered.
* **UTC.** Every time is stored as integer microseconds since the Unix epoch,
  UTC, so comparisons in SQL are exact and no time zone is ever guessed.
  Times handed back are aware UTC datetimes (the suite checks ``utcoffset()``).
* **Exclusive claims across processes.** Every write runs in ``BEGIN IMMEDIATE``:
  SQLite grants one write lock per database file, so two processes can never
  select the same due row and both lease it. (A plain ``BEGIN`` would read
  first and fail with "database is locked" when it tries to upgrade.)
* **Fencing token.** Each claim writes a fresh random ``token`` to the row.
  Every outcome write (complete, retry, fail, release, extend) matches on
  ``id AND state = 'running' AND token``; no match means the lease expired and
  another worker claimed the job, so we raise ``LeaseLost`` and change nothing.
  Because nobody else can touch a row while our token is on it, the claim's
  copy of the envelope is authoritative and outcome writes need no read first.
* **Recovered flag.** A ``running`` row whose lease has expired is due again;
  claiming it sets ``Claim.recovered = True`` so the job can tell that the
  previous attempt's worker died without recording an outcome.
* **Corrupt jobs.** A row whose envelope cannot be decoded is failed inside
  the claim transaction with the decode error and never handed out; the claim
  goes on with the next rows, so one bad row cannot stall a queue.
* **Threads.** One connection per instance guarded by a lock: simple and
  correct, since SQLite serialises writers anyway. WAL mode lets readers
  (``oddjob jobs list``) run while a worker writes; ``synchronous=FULL`` makes
  an acknowledged ``add`` survive a power cut, not just a process crash.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from oddjob_core.clock import utcnow
from oddjob_core.errors import KeyHeld, LeaseLost, PayloadError, StorageError
from oddjob_core.keyvalue import KeyValueStore, check_key
from oddjob_core.model import (
    AttemptError,
    Claim,
    Envelope,
    JobQuery,
    JobRecord,
    JobState,
    Page,
)
from oddjob_core.poison import CorruptJob, check_route, corrupt_error, decode_stored
from oddjob_core.storage import Capabilities, JobManagement, Storage
from oddjob_core.unique import UniqueKeys

from .options import SqliteOptions

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,             -- canonical UUIDv7 text: sorts by creation time (FIFO)
    queue TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL,
    run_at INTEGER NOT NULL,         -- UTC microseconds since the epoch, like every time here
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER,
    envelope TEXT NOT NULL,          -- the job as msgspec JSON
    result TEXT,                     -- JSON of the return value of a succeeded job
    error TEXT,                      -- JSON AttemptError of a job failed as undecodable
    lease_owner TEXT,
    lease_expires_at INTEGER,
    token TEXT                       -- fencing token of the current claim
);
CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (queue, run_at, priority, id)
    WHERE state IN ('scheduled', 'ready', 'retrying');
CREATE INDEX IF NOT EXISTS jobs_leased ON jobs (queue, lease_expires_at) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (state, updated_at);
-- unique jobs (oddjob_core.unique): one live job per (queue, key), finishing frees the key
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_key ON jobs (queue, KEY_OF)
    WHERE KEY_OF IS NOT NULL AND state IN ('scheduled', 'ready', 'retrying', 'running');
-- shared state (oddjob_core.keyvalue): paused schedules, how far ticks were enqueued
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)
"""

# a corrupt envelope (not JSON) has no key rather than failing every write that indexes it
KEY_OF = "(CASE WHEN json_valid(envelope) THEN json_extract(envelope, '$.key') END)"
SCHEMA = SCHEMA.replace("KEY_OF", KEY_OF)
WAITING = "('scheduled', 'ready', 'retrying')"
FINISHED = "('succeeded', 'failed', 'cancelled')"

DUE_WAITING = (
    f"SELECT id, state, envelope FROM jobs WHERE queue = ? AND state IN {WAITING} "
    "AND run_at <= ? ORDER BY priority DESC, run_at, id LIMIT ?"
)
RECORD_COLUMNS = (
    "id, queue, target, priority, run_at, created_at, envelope, error, state, "
    "updated_at, finished_at, result, lease_owner, lease_expires_at"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_encode = msgspec.json.Encoder().encode
_decode_envelope = msgspec.json.Decoder(Envelope).decode
_decode_error = msgspec.json.Decoder(AttemptError).decode
_decode_any = msgspec.json.Decoder().decode


def to_us(moment: datetime) -> int:
    """An aware datetime as exact integer microseconds since the epoch (UTC)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(value: int) -> datetime:
    """The inverse of ``to_us``: an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=value)


class SqliteStorage(Storage, JobManagement, KeyValueStore, UniqueKeys):
    """Jobs in one SQLite file, shared by every thread and process that opens it."""

    name = "example-sqlite"
    # Declared honestly: argument search would need JSON equality rules we do not
    # implement, so the suite shows that test as skipped instead of passing it falsely.
    capabilities = Capabilities(search_by_argument=False, shared_between_processes=True)

    def __init__(self, options: SqliteOptions) -> None:
        self.path = Path(options.path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path,
                timeout=options.busy_timeout,
                isolation_level=None,  # autocommit; we issue BEGIN IMMEDIATE ourselves
                check_same_thread=False,  # shared by the worker threads, behind self._lock
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._write() as conn:  # executescript would COMMIT first: one by one
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(
                f"cannot open SQLite database {self.path}: {exc}; check that the folder is "
                "writable, or set [tool.oddjob.example-sqlite] path to another file"
            ) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding SQLite's write lock from its first statement."""
        with self._lock, self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # also when COMMIT itself failed
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """Autocommit reads: WAL gives each statement a consistent snapshot."""
        with self._lock, self._errors():
            yield self._conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver errors into ``StorageError`` naming the file (chained to sqlite's own)."""
        try:
            yield
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite database {self.path}: {exc}") from exc

    # -- producing -------------------------------------------------------------

    def add(self, jobs: Sequence[Envelope]) -> None:
        """Insert the batch in one transaction; ``OR IGNORE`` makes a retried add idempotent."""
        with self._write() as conn:
            self._insert(conn, jobs)

    def _insert(self, conn: sqlite3.Connection, jobs: Sequence[Envelope]) -> None:
        now = utcnow()
        rows = [
            (
                str(env.id), env.queue, env.target,
                JobState.SCHEDULED if env.run_at > now else JobState.READY,
                env.priority, to_us(env.run_at), to_us(env.created_at), to_us(now),
                _encode(env).decode(),
            )
            for env in jobs
        ]  # fmt: skip
        conn.executemany(
            "INSERT OR IGNORE INTO jobs (id, queue, target, state, priority, run_at, "
            "created_at, updated_at, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def add_unique(self, job: Envelope) -> uuid.UUID:
        """Insert ``job`` unless a live job of its queue holds its key (one write transaction)."""
        with self._write() as conn:
            holder = _key_holder(conn, job)
            if holder is not None:
                return holder
            self._insert(conn, [job])
        return job.id

    # -- shared state ------------------------------------------------------------

    def kv_read(self, prefix: str) -> dict[str, bytes]:
        """Keys starting with ``prefix`` (``substr`` compare: ``_`` is no wildcard here)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT key, value FROM kv WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)
            ).fetchall()
        return {str(k): bytes(v) for k, v in rows}

    def kv_write(self, items: Mapping[str, bytes | None]) -> None:
        """Upsert or (for None) delete each key, in one transaction."""
        for key in items:
            check_key(key)
        with self._write() as conn:
            for key, value in items.items():
                if value is None:
                    conn.execute("DELETE FROM kv WHERE key = ?", (key,))
                else:
                    conn.execute(
                        "INSERT INTO kv (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (key, bytes(value)),
                    )

    # -- consuming -------------------------------------------------------------

    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        """Lease due jobs: waiting ones whose ``run_at`` passed, and expired leases (recovered)."""
        now = utcnow()
        expires = now + timedelta(seconds=lease)
        claims: list[Claim] = []
        with self._write() as conn:
            while len(claims) < limit:  # loops again only when rows turned out corrupt
                rows = self._due_rows(conn, queue, to_us(now), limit - len(claims))
                if not rows:
                    break
                for job_id, state, raw in rows:
                    claim = self._lease(conn, job_id, state, raw, owner, now, expires)
                    if claim is not None:
                        claims.append(claim)
        return claims

    @staticmethod
    def _due_rows(conn: sqlite3.Connection, queue: str, now: int, limit: int) -> list[Any]:
        """Expired leases first (their jobs waited longest), then due waiting jobs in order.

        The waiting index leads with ``run_at``, so the ``run_at <= now`` range
        touches due rows only: jobs scheduled days ahead cost nothing per poll.
        The price is sorting the due rows by priority on each claim, which only
        grows with a backlog that workers are already draining.
        """
        rows = conn.execute(
            "SELECT id, state, envelope FROM jobs WHERE queue = ? AND state = 'running' "
            "AND lease_expires_at <= ? ORDER BY lease_expires_at LIMIT ?",
            (queue, now, limit),
        ).fetchall()
        if len(rows) < limit:
            rows += conn.execute(DUE_WAITING, (queue, now, limit - len(rows))).fetchall()
        return rows

    def _lease(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        state: str,
        raw: str,
        owner: str,
        now: datetime,
        expires: datetime,
    ) -> Claim | None:
        """Lease one row, or fail it for good if it cannot be decoded or routed (the poison
        rule: ``oddjob_core.poison`` turns *any* decode exception, RecursionError included,
        into ``CorruptJob``, and ``check_route`` refuses an envelope whose id is not its row's)."""
        what = f"stored job {job_id} in {self.path}"
        try:
            env = decode_stored(_decode_envelope, raw, what=what)
            check_route(env, job_id=uuid.UUID(job_id), what=what)
        except CorruptJob as exc:
            error = corrupt_error(0, exc)
            conn.execute(
                "UPDATE jobs SET state = 'failed', error = ?, updated_at = ?, finished_at = ?, "
                "lease_owner = NULL, lease_expires_at = NULL, token = NULL WHERE id = ?",
                (_encode(error).decode(), to_us(now), to_us(now), job_id),
            )
            return None
        env = msgspec.structs.replace(env, attempts=env.attempts + 1)  # counts this attempt
        token = secrets.token_hex(16)
        conn.execute(
            "UPDATE jobs SET state = 'running', envelope = ?, token = ?, lease_owner = ?, "
            "lease_expires_at = ?, updated_at = ? WHERE id = ?",
            (_encode(env).decode(), token, owner, to_us(expires), to_us(now), job_id),
        )
        return Claim(
            job=env,
            token=token,
            owner=owner,
            lease_expires_at=expires,
            recovered=state == JobState.RUNNING,  # the previous worker's lease ran out
        )

    def _fenced(self, claim: Claim, assignments: str, params: Sequence[Any]) -> None:
        """Apply an outcome only while ``claim`` still owns the job, else raise ``LeaseLost``."""
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ?, lease_owner = NULL, "
                "lease_expires_at = NULL, token = NULL "
                "WHERE id = ? AND state = 'running' AND token = ?",
                (*params, to_us(utcnow()), str(claim.job.id), claim.token),
            )
            if cursor.rowcount == 0:
                raise LeaseLost(
                    f"job {claim.job.id} is no longer leased by this claim (its lease expired "
                    "and another worker claimed it, or it was purged); outcome not recorded"
                )

    def complete(self, claim: Claim, result: Any = None) -> None:
        now = to_us(utcnow())
        self._fenced(
            claim,
            "state = 'succeeded', result = ?, finished_at = ?",
            (_encode(result).decode(), now),
        )

    def retry(self, claim: Claim, run_at: datetime, error: AttemptError) -> None:
        env = msgspec.structs.replace(claim.job, run_at=run_at, errors=(*claim.job.errors, error))
        self._fenced(
            claim,
            "state = 'retrying', run_at = ?, envelope = ?, finished_at = NULL",
            (to_us(run_at), _encode(env).decode()),
        )

    def fail(self, claim: Claim, error: AttemptError) -> None:
        env = msgspec.structs.replace(claim.job, errors=(*claim.job.errors, error))
        self._fenced(
            claim,
            "state = 'failed', envelope = ?, finished_at = ?",
            (_encode(env).decode(), to_us(utcnow())),
        )

    def release(self, claims: Sequence[Claim]) -> None:
        """Give jobs back uncounted, in one transaction (a stopping worker releases many).

        The write is fenced like an outcome, but a stale claim (0 rows updated)
        is skipped silently instead of raising: its new owner keeps the job.
        """
        if not claims:
            return
        now = to_us(utcnow())
        with self._write() as conn:
            for claim in claims:
                env = msgspec.structs.replace(claim.job, attempts=max(0, claim.job.attempts - 1))
                conn.execute(
                    "UPDATE jobs SET state = 'ready', envelope = ?, updated_at = ?, "
                    "lease_owner = NULL, lease_expires_at = NULL, token = NULL "
                    "WHERE id = ? AND state = 'running' AND token = ?",
                    (_encode(env).decode(), now, str(claim.job.id), claim.token),
                )

    def extend(self, claims: Sequence[Claim], lease: float) -> set[uuid.UUID]:
        """Push leases to ``now + lease`` (fenced); return the ids whose lease was lost."""
        expires = to_us(utcnow() + timedelta(seconds=lease))
        lost: set[uuid.UUID] = set()
        if not claims:
            return lost
        with self._write() as conn:
            for claim in claims:
                cursor = conn.execute(
                    "UPDATE jobs SET lease_expires_at = ? "
                    "WHERE id = ? AND state = 'running' AND token = ?",
                    (expires, str(claim.job.id), claim.token),
                )
                if cursor.rowcount == 0:
                    lost.add(claim.job.id)
        return lost

    def next_due(self, queue: str) -> datetime | None:
        """The earliest waiting ``run_at`` or lease expiry: burst mode and sleeps rely on it."""
        with self._read() as conn:
            (due,) = conn.execute(
                f"SELECT min(t) FROM (SELECT min(run_at) AS t FROM jobs WHERE queue = ? AND "
                f"state IN {WAITING} UNION ALL SELECT min(lease_expires_at) FROM jobs "
                "WHERE queue = ? AND state = 'running')",
                (queue, queue),
            ).fetchone()
        return from_us(due) if due is not None else None

    # -- management ------------------------------------------------------------

    def get(self, job_id: uuid.UUID) -> JobRecord | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM jobs WHERE id = ?", (str(job_id),)
            ).fetchone()
        return _record(row) if row else None

    def search(self, query: JobQuery) -> Page:
        """Filter in SQL, newest first (UUIDv7 ids sort by creation time)."""
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        for column, op, value in (
            ("queue", "=", query.queue),
            ("target", "=", query.target),
            ("created_at", ">=", query.created_after and to_us(query.created_after)),
            ("created_at", "<", query.created_before and to_us(query.created_before)),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        if query.states is not None:
            where.append(f"state IN ({', '.join('?' * len(query.states)) or 'NULL'})")
            params.extend(str(s) for s in query.states)
        sql = " AND ".join(where)
        with self._read() as conn:
            (total,) = conn.execute(f"SELECT count(*) FROM jobs WHERE {sql}", params).fetchone()
            rows = conn.execute(
                f"SELECT {RECORD_COLUMNS} FROM jobs WHERE {sql} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*params, query.limit, query.offset),
            ).fetchall()
        return Page(
            jobs=[_record(r) for r in rows], total=total, offset=query.offset, limit=query.limit
        )

    def counts(self, queue: str | None = None) -> dict[str, dict[JobState, int]]:
        out: dict[str, dict[JobState, int]] = {}
        with self._read() as conn:
            rows = conn.execute(
                "SELECT queue, state, count(*) FROM jobs WHERE ? IS NULL OR queue = ? "
                "GROUP BY queue, state",
                (queue, queue),
            ).fetchall()
        for name, state, n in rows:
            out.setdefault(name, {})[JobState(state)] = n
        return out

    def cancel(self, job_id: uuid.UUID) -> bool:
        now = to_us(utcnow())
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET state = 'cancelled', updated_at = ?, finished_at = ? "
                f"WHERE id = ? AND state IN {WAITING}",
                (now, now, str(job_id)),
            )
        return cursor.rowcount == 1

    def requeue(self, job_id: uuid.UUID, run_at: datetime | None = None) -> bool:
        """Ready a finished job again with ``attempts = 0``; ``PayloadError`` for a corrupt one."""
        now = utcnow()
        due = run_at or now
        with self._write() as conn:
            row = conn.execute(
                f"SELECT envelope FROM jobs WHERE id = ? AND state IN {FINISHED}", (str(job_id),)
            ).fetchone()
            if row is None:
                return False
            try:
                env = _decode_envelope(row[0])
            except Exception as exc:  # corrupt (RecursionError too)
                raise PayloadError(
                    f"job {job_id} cannot be requeued: its stored envelope in {self.path} "
                    f"cannot be decoded ({exc}); it stays failed (remove failed jobs with: "
                    "oddjob jobs purge --state failed)"
                ) from exc
            holder = _key_holder(conn, env) if env.key is not None else None
            if env.key is not None and holder is not None:  # the unique index would refuse it
                raise KeyHeld(job_id, env.key, env.queue, holder)
            env = msgspec.structs.replace(env, run_at=due, attempts=0)
            conn.execute(
                "UPDATE jobs SET state = ?, run_at = ?, envelope = ?, result = NULL, "
                "finished_at = NULL, updated_at = ? WHERE id = ?",
                (
                    JobState.READY if due <= now else JobState.SCHEDULED,
                    to_us(due),
                    _encode(env).decode(),
                    to_us(now),
                    str(job_id),
                ),
            )
        return True

    def delete(self, job_id: uuid.UUID) -> bool:
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM jobs WHERE id = ? AND state <> 'running'", (str(job_id),)
            )
        return cursor.rowcount == 1

    def purge_finished(
        self, states: tuple[JobState, ...], older_than: datetime | None, queue: str | None
    ) -> int:
        chosen = [str(s) for s in states]  # refuses waiting states
        if not chosen:
            return 0
        with self._write() as conn:
            cursor = conn.execute(
                f"DELETE FROM jobs WHERE state IN ({', '.join('?' * len(chosen))}) "
                "AND (? IS NULL OR updated_at < ?) AND (? IS NULL OR queue = ?)",
                (*chosen, *[older_than and to_us(older_than)] * 2, queue, queue),
            )
        return cursor.rowcount

    def journal_mode(self) -> str:
        """The database's journal mode (``wal`` unless the file system refused it)."""
        with self._read() as conn:
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        return str(mode)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _record(row: Sequence[Any]) -> JobRecord:
    """A management record; a corrupt row is shown from its columns and its decode error."""
    (job_id, queue, target, priority, run_at, created_at, raw, error) = row[:8]
    (state, updated_at, finished_at, result, lease_owner, lease_expires_at) = row[8:]
    try:
        env = _decode_envelope(raw)
    except Exception:  # corrupt (RecursionError too): shown from its columns
        env = Envelope(
            id=uuid.UUID(job_id),
            queue=queue,
            target=target,
            arguments={},
            run_at=from_us(run_at),
            created_at=from_us(created_at),
            priority=priority,
            errors=(_decode_error(error),) if error else (),
        )
    return JobRecord(
        envelope=env,
        state=JobState(state),
        updated_at=from_us(updated_at),
        finished_at=from_us(finished_at) if finished_at is not None else None,
        result=_decode_any(result) if result is not None else None,
        lease_owner=lease_owner,
        lease_expires_at=from_us(lease_expires_at) if lease_expires_at is not None else None,
    )


def _key_holder(conn: sqlite3.Connection, job: Envelope) -> uuid.UUID | None:
    """The waiting or running job of ``job``'s queue that holds ``job.key``, if any."""
    row = conn.execute(
        "SELECT id FROM jobs WHERE queue = ? AND json_extract(envelope, '$.key') = ? "
        "AND state IN ('scheduled', 'ready', 'retrying', 'running')",
        (job.queue, job.key),
    ).fetchone()
    return uuid.UUID(row[0]) if row is not None else None
