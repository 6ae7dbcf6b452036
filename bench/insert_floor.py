"""How fast can any client batch-insert oddjob's rows? The server's share of batch enqueue.

``python -m bench.insert_floor`` times binary COPY of rows built *before* the clock
starts (no library code is timed) into oddjob-postgres's own ``jobs`` table, into
variants of it, and the raw baseline's insert of two scalar columns, interleaved
per run. The first figure is the ceiling of oddjob-postgres's batch enqueue: its
ratio to the raw baseline is what even a client that cost nothing would reach.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

import msgspec
import psycopg

from oddjob_core import Oddjob, call
from oddjob_core.model import Envelope

from .jobs import noop
from .services import PG_DSN
from .systems import RAW_SCHEMA

COLUMNS = "id, queue, target, state, priority, run_at, envelope, created_at"
TYPES = ["uuid", "text", "text", "text", "int4", "timestamptz", "jsonb", "timestamptz"]
_encode = msgspec.json.Encoder().encode

Row = Callable[[Envelope], tuple[Any, ...]]


def _whole_envelope(e: Envelope) -> tuple[Any, ...]:
    """The row oddjob-postgres writes today: the whole envelope in the jsonb column."""
    return (e.id, e.queue, e.target, "ready", e.priority, e.run_at, _encoded(e), e.created_at)


def _arguments_only(e: Envelope) -> tuple[Any, ...]:
    """The same row with only the arguments in jsonb (the other fields have columns)."""
    return (
        e.id,
        e.queue,
        e.target,
        "ready",
        e.priority,
        e.run_at,
        _encoded(e.arguments),
        e.created_at,
    )


def _encoded(value: Any) -> Any:
    from oddjob_postgres.rows import EncodedJson

    return EncodedJson(_encode(value))


def _copy_into_jobs(
    envelopes: list[Envelope], batch: int, row: Row, drop_claim_index: bool
) -> float:
    """Rows per second of binary COPY into a fresh oddjob schema, batch by batch."""
    from oddjob_postgres import PostgresOptions, PostgresStorage
    from oddjob_postgres.rows import EncodedJson, EncodedJsonbBinaryDumper

    schema = "floor_" + secrets.token_hex(4)
    PostgresStorage(PostgresOptions(dsn=PG_DSN, schema=schema)).close()  # migrates
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.adapters.register_dumper(EncodedJson, EncodedJsonbBinaryDumper)
        if drop_claim_index:
            conn.execute(f"DROP INDEX {schema}.jobs_claim_order")
        rows = [row(e) for e in envelopes]
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            with (
                conn.transaction(),
                conn.cursor().copy(
                    f"COPY {schema}.jobs ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(TYPES)
                for r in rows[start : start + batch]:
                    copy.write_row(r)
        elapsed = time.perf_counter() - started
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return len(rows) / elapsed


def _raw_insert(n: int, batch: int) -> float:
    """The bench's raw baseline: unnest of two scalar columns into its own table."""
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS jobs")
        conn.execute(RAW_SCHEMA)
        started = time.perf_counter()
        for start in range(0, n, batch):
            items = list(range(start, min(n, start + batch)))
            conn.execute(
                "INSERT INTO jobs (i, s) SELECT * FROM unnest(%s::int[], %s::text[])",
                (items, ["x"] * len(items)),
            )
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE jobs")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="rows per measurement")
    parser.add_argument("--batch", type=int, default=1000, help="rows per COPY / insert")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    app = Oddjob(storage="memory", allowed_prefixes=["bench"])
    envelopes = [app._default.envelope(call(noop, i, "x")) for i in range(args.n)]
    variants: dict[str, Callable[[], float]] = {
        "COPY oddjob rows (ceiling of oddjob-postgres)": lambda: _copy_into_jobs(
            envelopes, args.batch, _whole_envelope, False
        ),
        "  same, arguments only in jsonb": lambda: _copy_into_jobs(
            envelopes, args.batch, _arguments_only, False
        ),
        "  same, whole envelope, no claim index": lambda: _copy_into_jobs(
            envelopes, args.batch, _whole_envelope, True
        ),
        "raw baseline insert (2 scalar columns)": lambda: _raw_insert(args.n, args.batch),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for run in range(args.runs):
        for name, measure in variants.items():
            rates[name].append(measure())
        print(f"run {run + 1}/{args.runs} done", flush=True)
    raw = rates["raw baseline insert (2 scalar columns)"]
    print(
        f"\nN={args.n:,} batch={args.batch} runs={args.runs}; rows/s, median (ratio to raw, per run)"
    )
    for name, values in rates.items():
        ratios = [v / r for v, r in zip(values, raw, strict=True)]
        print(
            f"{name:44s} {statistics.median(values):9,.0f}   "
            f"{statistics.median(ratios):.2f} x ({min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
