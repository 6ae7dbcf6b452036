"""Huey app for the benchmark: SQLite storage at $BENCH_HUEY_DB, durable like oddjob's.

``fsync=True`` makes Huey set ``PRAGMA synchronous=FULL`` itself: every enqueue's
commit is flushed to disk (one fdatasync of the WAL), as oddjob-filesystem's
enqueue is. Left unset (Huey's default, ``fsync=None``) the level is whatever the
SQLite build defaults to: FULL for Python's usual builds, but a build with
``SQLITE_DEFAULT_WAL_SYNCHRONOUS=1`` (NORMAL) would flush only at checkpoints,
and ``fsync=False`` (synchronous=OFF) never: neither is a fair peer for a
durable store.
"""

import os

from huey import SqliteHuey

from bench.jobs import noop

huey = SqliteHuey("bench", filename=os.environ["BENCH_HUEY_DB"], fsync=True)


@huey.task()
def noop_task(i: int, s: str) -> None:
    noop(i, s)
