"""procrastinate app for the benchmark ($BENCH_PG_DSN_DB)."""

import os

from procrastinate import App, PsycopgConnector

from bench.jobs import noop

app = App(connector=PsycopgConnector(conninfo=os.environ["BENCH_PG_DSN_DB"]))


@app.task(name="noop", queue="bench")
def noop_task(i: int, s: str) -> None:
    noop(i, s)
