"""Raw `FOR UPDATE SKIP LOCKED` loop on the equivalent job row: 8 threads, each claims 10 rows in
oddjob's claim order, runs them, marks them succeeded, commits."""

import os
import threading
import time

import psycopg

from bench.jobs import noop

CLAIM = """
SELECT id, arguments FROM jobs
WHERE queue = 'bench' AND state IN ('scheduled', 'ready', 'retrying') AND run_at <= now()
ORDER BY priority DESC, run_at, id LIMIT 10 FOR UPDATE SKIP LOCKED
"""
DONE = "UPDATE jobs SET state = 'succeeded', attempts = attempts + 1, finished_at = now() WHERE id = ANY(%s)"


def loop(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        while True:
            with conn.transaction():
                rows = conn.execute(CLAIM).fetchall()
                for _, arguments in rows:
                    noop(arguments["i"], arguments["s"])
                if rows:
                    conn.execute(DONE, ([r[0] for r in rows],))
            if not rows:
                time.sleep(0.01)  # idle poll


if __name__ == "__main__":
    dsn = os.environ["BENCH_PG_DSN_DB"]
    threads = [threading.Thread(target=loop, args=(dsn,), daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
