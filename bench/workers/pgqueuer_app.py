"""pgqueuer worker for the benchmark: `python -m bench.workers.pgqueuer_app` ($BENCH_PG_DSN_DB).

pgqueuer accepts only async entrypoints; the sync job runs on an 8-thread executor,
like the other systems' 8 worker threads. asyncpg is the driver pgqueuer's docs lead with
(its psycopg driver drained ~60 jobs/s here, waiting on its own notifications).
"""

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from psycopg.conninfo import conninfo_to_dict

from bench.jobs import noop


async def main() -> PgQueuer:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(8)
    params = conninfo_to_dict(os.environ["BENCH_PG_DSN_DB"])  # asyncpg wants keywords or a URL
    conn = await asyncpg.connect(
        host=params.get("host"),
        port=params.get("port"),
        user=params.get("user"),
        password=params.get("password"),
        database=params.get("dbname"),
    )
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop_entry(job: Job) -> None:
        i, _, s = (job.payload or b"").decode().partition(",")
        await loop.run_in_executor(pool, noop, int(i), s)

    return pgq


async def _run() -> None:
    # `pgq run` 1.6.0 crashes on its own --log-level default, so run the app directly
    # with the CLI's defaults (batch size 10, dequeue timeout 30 s).
    pgq = await main()
    await pgq.run()


if __name__ == "__main__":
    asyncio.run(_run())
