"""next_due on a queue with many scheduled jobs and no ready one, in a large table.

    python plugins/oddjob-postgres/bench/next_due.py [--jobs 1000000] [--scheduled 25000]

Fills a fresh schema (migrated by oddjob-postgres) with ``--jobs`` jobs: finished
ones spread over four queues, and every (jobs/scheduled)-th one a job of queue
``later`` scheduled within the next day at one of three priorities, none ready
(interleaved on the heap, as jobs enqueued over time are) (what an idle worker of a scheduling
queue asks about between polls). VACUUM ANALYZEs, then runs the statement of
before #16 (kept below) and the current one alternately ``--rounds`` times each
and prints their medians, the ratio, and the buffers each read. Drops the schema.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
from typing import Any

import psycopg
from oddjob_postgres import PostgresOptions, PostgresStorage
from oddjob_postgres.storage import statements

DSN = os.environ.get("ODDJOB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")

FILL = """
INSERT INTO {t} (id, queue, target, state, priority, run_at, attempts, envelope, errors,
                 created_at, updated_at, finished_at)
SELECT gen_random_uuid(), queue, 'app.jobs:work', state, priority, at, 1, '{}'::jsonb,
       '[]'::jsonb, at, at, CASE WHEN state = 'succeeded' THEN at END
FROM (SELECT CASE WHEN i %% %(every)s = 0 THEN 'later' ELSE 'queue-' || (i %% 4) END AS queue,
             CASE WHEN i %% %(every)s = 0 THEN 'scheduled' ELSE 'succeeded' END AS state,
             CASE WHEN i %% %(every)s = 0 THEN i %% 3 ELSE 0 END AS priority,
             CASE WHEN i %% %(every)s = 0 THEN now() + interval '1 day' * i / %(n)s
                  ELSE now() - interval '1 day' * i / %(n)s END AS at
      FROM generate_series(1, %(n)s) AS i) AS g
"""

BEFORE = """
SELECT least(
    (SELECT run_at FROM {s}.jobs WHERE queue = %(queue)s AND state = 'ready'
     ORDER BY priority DESC, run_at, id LIMIT 1),
    (SELECT min(run_at) FROM {s}.jobs
     WHERE queue = %(queue)s AND state IN ('scheduled', 'retrying')),
    (SELECT min(lease_expires_at) FROM {s}.jobs WHERE queue = %(queue)s AND state = 'running')
)
"""


def _time(conn: psycopg.Connection[Any], sql: str) -> float:
    started = time.perf_counter()
    conn.execute(sql, {"queue": "later"}).fetchone()
    return (time.perf_counter() - started) * 1000


def _buffers(conn: psycopg.Connection[Any], sql: str) -> int:
    found = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, {"queue": "later"}
    ).fetchone()
    plan = found[0][0]["Plan"] if found else {}
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--scheduled", type=int, default=25_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    schema = f"oddjob_nextdue_{secrets.token_hex(4)}"
    storage = PostgresStorage(PostgresOptions(dsn=DSN, schema=schema, pool_max_size=1))
    try:
        with psycopg.connect(DSN, autocommit=True) as conn:
            started = time.perf_counter()
            conn.execute(
                FILL.replace("{t}", f'"{schema}".jobs'),
                {"n": args.jobs, "every": args.jobs // args.scheduled},
            )
            conn.execute(f'VACUUM ANALYZE "{schema}".jobs')
            print(f"filled {args.jobs:,} rows in {time.perf_counter() - started:.0f} s")
            before = BEFORE.replace("{s}", f'"{schema}"')
            now = statements(schema).next_due
            times: dict[str, list[float]] = {"before": [], "now": []}
            for _ in range(args.rounds):
                times["before"].append(_time(conn, before))
                times["now"].append(_time(conn, now))
            b, n = statistics.median(times["before"]), statistics.median(times["now"])
            print(f"before: median {b:.2f} ms, {_buffers(conn, before):,} buffers")
            print(f"now:    median {n:.2f} ms, {_buffers(conn, now):,} buffers")
            print(f"ratio before/now: {b / n:.0f}x")
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        storage.close()


if __name__ == "__main__":
    main()
