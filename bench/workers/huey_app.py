"""Huey app for the benchmark: SQLite storage at $BENCH_HUEY_DB."""

import os

from huey import SqliteHuey

from bench.jobs import noop

huey = SqliteHuey("bench", filename=os.environ["BENCH_HUEY_DB"])


@huey.task()
def noop_task(i: int, s: str) -> None:
    noop(i, s)
