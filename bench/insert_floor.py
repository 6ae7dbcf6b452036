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
from oddjob_postgres import PostgresOptions, PostgresStorage
from oddjob_postgres.rows import EncodedJson, EncodedJsonbBinaryDumper, copy_rows
from oddjob_postgres.statements import COPY_NEW_TYPES
from oddjob_postgres.storage import statements

from oddjob_core import Oddjob, call
from oddjob_core.clock import utcnow
from oddjob_core.model import Envelope

from .jobs import noop
from .services import PG_DSN
from .systems import RAW_BATCH_INSERT, RAW_SCHEMA, raw_rows

Rows = list[tuple[Any, ...]]
_ENVELOPE = 6  # the envelope's place in a ``copy_rows`` row


def _arguments_only(rows: Rows, envelopes: list[Envelope]) -> Rows:
    """The same rows with only the arguments in the jsonb column (the rest has columns)."""
    encode = msgspec.json.Encoder().encode
    return [
        (*row[:_ENVELOPE], EncodedJson(encode(env.arguments)), *row[_ENVELOPE + 1 :])
        for row, env in zip(rows, envelopes, strict=True)
    ]


def _copy_into_jobs(rows: Rows, batch: int, drop_claim_index: bool) -> float:
    """Rows per second of oddjob-postgres's own COPY into a fresh schema, batch by batch."""
    schema = "floor_" + secrets.token_hex(4)
    PostgresStorage(PostgresOptions(dsn=PG_DSN, schema=schema)).close()  # migrates
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.adapters.register_dumper(EncodedJson, EncodedJsonbBinaryDumper)
        if drop_claim_index:
            conn.execute(f"DROP INDEX {schema}.jobs_claim_order")
        statement = statements(schema).copy_new
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            with conn.transaction(), conn.cursor().copy(statement) as copy:
                copy.set_types(COPY_NEW_TYPES)
                for row in rows[start : start + batch]:
                    copy.write_row(row)
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
            conn.execute(RAW_BATCH_INSERT, raw_rows(items))
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
    whole = copy_rows(envelopes, utcnow())
    slim = _arguments_only(whole, envelopes)
    raw_name = "raw baseline insert (2 scalar columns)"
    variants: dict[str, Callable[[], float]] = {
        "COPY oddjob rows (ceiling of oddjob-postgres)": lambda: _copy_into_jobs(
            whole, args.batch, False
        ),
        "  same, arguments only in jsonb": lambda: _copy_into_jobs(slim, args.batch, False),
        "  same, whole envelope, no claim index": lambda: _copy_into_jobs(whole, args.batch, True),
        raw_name: lambda: _raw_insert(args.n, args.batch),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for run in range(args.runs):
        for name, measure in variants.items():
            rates[name].append(measure())
        print(f"run {run + 1}/{args.runs} done", flush=True)
    raw = rates[raw_name]
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
