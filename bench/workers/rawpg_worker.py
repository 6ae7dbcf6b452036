"""Raw `FOR UPDATE SKIP LOCKED` loop: 8 threads, each claims 10 rows, runs them, marks done."""

import os
import threading
import time

import psycopg

from bench.jobs import noop

CLAIM = """
SELECT id, i, s FROM jobs WHERE status = 'queued'
ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED
"""
DONE = "UPDATE jobs SET status = 'done', finished_at = now() WHERE id = ANY(%s)"


def loop(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        while True:
            with conn.transaction():
                rows = conn.execute(CLAIM).fetchall()
                for _, i, s in rows:
                    noop(i, s)
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
