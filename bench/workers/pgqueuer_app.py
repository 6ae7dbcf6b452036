"""pgqueuer factory for `pgq run bench.workers.pgqueuer_app:main` ($BENCH_PG_DSN_DB).

pgqueuer accepts only async entrypoints; the sync job runs on an 8-thread executor,
like the other systems' 8 worker threads.
"""

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import psycopg
from pgqueuer import PgQueuer
from pgqueuer.db import PsycopgDriver
from pgqueuer.models import Job

from bench.jobs import noop


async def main() -> PgQueuer:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(8)
    conn = await psycopg.AsyncConnection.connect(os.environ["BENCH_PG_DSN_DB"], autocommit=True)
    pgq = PgQueuer(PsycopgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop_entry(job: Job) -> None:
        i, _, s = (job.payload or b"").decode().partition(",")
        await loop.run_in_executor(pool, noop, int(i), s)

    return pgq
