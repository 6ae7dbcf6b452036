"""Time the dashboard's overview and first jobs page on a 1,000,000-job PostgreSQL store.

    python plugins/oddjob-dashboard/bench/postgres_million.py [--jobs 1000000] [--keep]

Fills a fresh schema (migrated by oddjob-postgres) with jobs spread over four
queues and the last 24 hours, 90 % succeeded, 5 % failed, the rest waiting,
VACUUM ANALYZEs it, then renders each page through the ASGI app (the whole
request: storage queries, templates, chart) ``--rounds`` times and prints the
median and worst. Drops the schema afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time

import psycopg
from oddjob_dashboard import create_app
from starlette.testclient import TestClient

from oddjob_core import Oddjob

DSN = os.environ.get("ODDJOB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")

FILL = """
INSERT INTO {t} (id, queue, target, state, priority, run_at, attempts, envelope, errors,
                 result, created_at, updated_at, finished_at)
SELECT id, queue, 'app.jobs:send_invoice', state, 0,
       CASE WHEN state = 'scheduled' THEN at + interval '2 days' ELSE at END,
       CASE WHEN state IN ('scheduled', 'ready') THEN 0 ELSE 1 END,
       jsonb_build_object('id', id, 'queue', queue, 'target', 'app.jobs:send_invoice',
                          'arguments', jsonb_build_object('customer_id', i, 'note', 'n' || i),
                          'run_at', CASE WHEN state = 'scheduled' THEN at + interval '2 days'
                                         ELSE at END, 'created_at', at),
       CASE WHEN state = 'failed' THEN jsonb_build_array(jsonb_build_object(
           'attempt', 1, 'type', 'builtins.RuntimeError', 'message', 'boom',
           'at', at + interval '1 second')) ELSE '[]'::jsonb END,
       CASE WHEN state = 'succeeded' THEN '"ok"'::jsonb END,
       at, at + interval '1 second',
       CASE WHEN state IN ('succeeded', 'failed') THEN at + interval '1 second' END
FROM (
    SELECT i,
           (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7' ||
            substr(md5(i::text), 1, 3) || '8' || substr(md5(i::text), 4, 15))::uuid AS id,
           'queue-' || (i %% 4) AS queue,
           CASE WHEN i %% 20 = 0 THEN 'failed' WHEN i %% 20 = 1 THEN 'ready'
                WHEN i %% 40 = 2 THEN 'scheduled' ELSE 'succeeded' END AS state,
           at
    FROM (SELECT i, now() - (interval '1 day' * (%(n)s - i) / %(n)s) AS at
          FROM generate_series(1, %(n)s) AS i) AS s
) AS g
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--schema", default=f"oddjob_dashbench_{secrets.token_hex(4)}")
    parser.add_argument("--keep", action="store_true", help="keep the schema (reuse: --schema)")
    args = parser.parse_args()
    app = Oddjob(storage="postgres", postgres={"dsn": DSN, "schema": args.schema})
    try:
        app.storage  # noqa: B018 - creates and migrates the schema
        table = f'"{args.schema}".jobs'
        with psycopg.connect(DSN, autocommit=True) as conn:
            have = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            if not have or have[0] < args.jobs:
                started = time.perf_counter()
                conn.execute(FILL.replace("{t}", table), {"n": args.jobs})
                conn.execute(f"VACUUM ANALYZE {table}")
                print(f"filled {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s")
        client = TestClient(create_app(app))
        board = client.app.state.dashboard  # type: ignore[attr-defined]
        started = time.perf_counter()
        board.warm()
        print(
            f"snapshot of counts, lag and history (background): "
            f"{(time.perf_counter() - started) * 1000:.0f} ms"
        )
        for path in ("/", "/jobs", "/jobs?state=failed", "/jobs?queue=queue-1&state=ready"):
            client.get(path)  # warm: pool, templates, plans
            times = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text[:500]
                assert "Not available here" not in response.text, path
            print(
                f"{path:40s} median {statistics.median(times):7.1f} ms   "
                f"worst {max(times):7.1f} ms   ({args.rounds} rounds)"
            )
    finally:
        app.close()
        if not args.keep:
            with psycopg.connect(DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')


if __name__ == "__main__":
    main()
