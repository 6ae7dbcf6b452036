"""Every benchmarked system: how to set it up, enqueue into it, start its worker, clean up.

A system runs inside one driver process (bench/driver.py). Producer calls happen
in the driver; the worker is always a separate process started with
``worker_command`` once all jobs are enqueued. Peers are set up the way their
docs recommend for durable work: persistent messages with publisher confirms,
committed rows, acknowledgement after the job.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import services

PY = sys.executable
WORKERS = 8
QUEUE = "bench"


class Context:
    """Per-run facts: a private folder, the counter file, a unique suffix for names."""

    def __init__(self, workdir: Path, counter: Path) -> None:
        self.workdir = workdir
        self.counter = counter
        self.suffix = uuid.uuid4().hex[:8]


class System:
    name = ""
    family = (
        ""  # which server it shares with its peers: memory, embedded, rabbitmq, postgres, sqlserver
    )
    server: str | None = None  # whose CPU counts as broker/database CPU
    is_oddjob = False
    has_batch = False
    in_process = False  # enqueue and work in one process (the in-memory store only)
    thread_safe_enqueue = False  # enqueue_one may be called from many threads at once
    env: dict[str, str]

    def __init__(self) -> None:
        self.env = {}

    def unavailable(self) -> str | None:
        """Why this system cannot run here, or None."""
        return None

    def setup(self, ctx: Context) -> None: ...

    def enqueue_one(self, i: int) -> None:
        raise NotImplementedError

    def enqueue_batch(self, items: list[int]) -> None:
        raise NotImplementedError

    def worker_command(self, ctx: Context) -> list[str]:
        raise NotImplementedError

    def before_worker(self) -> None:
        """Called after enqueueing, before the worker starts (not timed)."""

    def transactions(self) -> int | None:
        """Database transactions so far in this run's database (PostgreSQL systems only)."""
        return None

    def close_producer(self) -> None: ...

    def teardown(self, ctx: Context) -> None: ...


def _missing(*modules: str) -> str | None:
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            return f"cannot import {module}: {type(exc).__name__}: {exc}"
    return None


# -- oddjob ---------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_toml(path: Path, top: dict[str, Any], tables: dict[str, dict[str, Any]]) -> None:
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for table, values in tables.items():
        lines.append(f"\n[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")


class Oddjob(System):
    """oddjob with one storage backend; the worker is ``oddjob worker --workers 8``."""

    is_oddjob = True
    has_batch = True
    thread_safe_enqueue = True
    backend = ""
    plugin_module: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.name = f"oddjob-{self.backend}"
        self.app: Any = None
        self.config: Path | None = None

    def unavailable(self) -> str | None:
        reason = _missing("oddjob_core", "oddjob_threads")
        if reason is None and self.plugin_module:
            reason = _missing(self.plugin_module)
        if reason is None:
            from oddjob_core.plugins import PluginRegistry

            try:
                PluginRegistry().storage_backend(self.backend)
            except Exception as exc:
                reason = f"storage backend '{self.backend}' is not usable: {exc}"
        return reason or self.server_unavailable()

    def server_unavailable(self) -> str | None:
        return None

    def backend_options(self, ctx: Context) -> dict[str, Any]:
        return {}

    def setup(self, ctx: Context) -> None:
        from oddjob_core import Oddjob as App

        self.config = ctx.workdir / "oddjob.toml"
        options = self.backend_options(ctx)
        write_toml(
            self.config,
            {
                "storage": self.backend,
                "allowed_prefixes": ["bench"],
                "imports": ["bench.jobs"],
            },
            {self.backend: options} if options else {},
        )
        self.app = App(self.config)

    def enqueue_one(self, i: int) -> None:
        from .jobs import noop

        self.app.enqueue(noop, i, "x")

    def enqueue_batch(self, items: list[int]) -> None:
        from oddjob_core import call

        from .jobs import noop

        self.app.enqueue_many([call(noop, i, "x") for i in items])

    def worker_command(self, ctx: Context) -> list[str]:
        assert self.config is not None
        cmd = [PY, "-m", "oddjob_core", "--config", str(self.config)]
        return [*cmd, "worker", "--workers", str(WORKERS), "--quiet"]

    def close_producer(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None


class OddjobMemory(Oddjob):
    """The engine alone: enqueue and drain inside one process (memory is not shared)."""

    backend = "memory"
    family = "memory"
    in_process = True
    thread_safe_enqueue = False  # its worker process does its own enqueueing

    def worker_command(self, ctx: Context) -> list[str]:
        return [PY, "-m", "bench.workers.oddjob_memory"]


class OddjobMemoryBare(OddjobMemory):
    """The engine with no plugin but its memory store and threads executor (entry points skipped).

    The A/B partner of ``oddjob-memory``, which loads every installed plugin:
    oddjob-prometheus records every attempt, oddjob-otel waits for an SDK.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name = "oddjob-memory-bare"
        self.env["BENCH_PLUGINS"] = "bare"


class OddjobMemoryTraced(OddjobMemory):
    """``oddjob-memory`` with an OpenTelemetry SDK installed: every attempt records a real span."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "oddjob-memory-traced"
        self.env["BENCH_PLUGINS"] = "traced"

    def unavailable(self) -> str | None:
        return _missing("oddjob_otel", "opentelemetry.sdk") or super().unavailable()


class OddjobFilesystem(Oddjob):
    backend = "filesystem"
    family = "embedded"
    plugin_module = "oddjob_filesystem"

    def backend_options(self, ctx: Context) -> dict[str, Any]:
        return {"path": str(ctx.workdir / "store")}


class OddjobPostgres(Oddjob):
    backend = "postgres"
    family = "postgres"
    server = "postgres"
    plugin_module = "oddjob_postgres"

    def server_unavailable(self) -> str | None:
        return services.pg_available()

    def backend_options(self, ctx: Context) -> dict[str, Any]:
        self.db = f"bench_oddjob_{ctx.suffix}"
        return {"dsn": services.pg_create_database(self.db)}

    def before_worker(self) -> None:
        services.pg_analyze(services.conninfo.make_conninfo(services.PG_DSN, dbname=self.db))

    def transactions(self) -> int | None:
        return services.pg_transactions(self.db)

    def teardown(self, ctx: Context) -> None:
        services.pg_drop_database(self.db)


class OddjobRabbitmq(Oddjob):
    backend = "rabbitmq"
    family = "rabbitmq"
    server = "rabbitmq"
    plugin_module = "oddjob_rabbitmq"

    def server_unavailable(self) -> str | None:
        return services.amqp_available()

    def backend_options(self, ctx: Context) -> dict[str, Any]:
        self.vhost = f"bench_oddjob_{ctx.suffix}"
        return {"url": services.amqp_create_vhost(self.vhost)}

    def teardown(self, ctx: Context) -> None:
        services.amqp_delete_vhost(self.vhost)


class OddjobRabbitmqClassic(OddjobRabbitmq):
    """oddjob-rabbitmq on classic queues, the queue type the peers use: like for like.

    The default (quorum queues) replicates on a cluster and counts deliveries for
    poison jobs, which costs the broker more per message.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name = "oddjob-rabbitmq-classic"

    def backend_options(self, ctx: Context) -> dict[str, Any]:
        return {**super().backend_options(ctx), "queue_type": "classic"}


class OddjobRabbitmqPrefetch16(OddjobRabbitmq):
    """oddjob-rabbitmq at prefetch 16, Dramatiq's default (oddjob's automatic prefetch is 46)."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "oddjob-rabbitmq-p16"

    def backend_options(self, ctx: Context) -> dict[str, Any]:
        return {**super().backend_options(ctx), "prefetch": 16}


class OddjobSqlserver(Oddjob):
    backend = "sqlserver"
    family = "sqlserver"
    plugin_module = "oddjob_sqlserver"

    def server_unavailable(self) -> str | None:
        if not os.environ.get("ODDJOB_SQLSERVER_DSN"):
            return "ODDJOB_SQLSERVER_DSN is not set (no SQL Server to measure against)"
        return None

    def backend_options(self, ctx: Context) -> dict[str, Any]:
        return {
            "connection_string": os.environ["ODDJOB_SQLSERVER_DSN"],
            "schema": f"bench_{ctx.suffix}",
        }


# -- embedded peer --------------------------------------------------------------------


class Huey(System):
    """Huey with its SQLite storage (WAL, ``fsync=True``: synchronous=FULL), 1 worker thread.

    One thread is Huey's best here (SQLite serialises writers; more threads only
    contend); ``huey-2``, ``huey-4`` and ``huey-8`` run beside it, and the report
    compares oddjob-filesystem with the fastest of them in each run.
    """

    name = "huey"
    family = "embedded"
    threads = 1
    thread_safe_enqueue = True  # SqliteStorage opens a connection per thread

    def unavailable(self) -> str | None:
        return _missing("huey")

    def setup(self, ctx: Context) -> None:
        os.environ["BENCH_HUEY_DB"] = self.env["BENCH_HUEY_DB"] = str(ctx.workdir / "huey.db")
        from .workers import huey_app

        self.task = huey_app.noop_task

    def enqueue_one(self, i: int) -> None:
        self.task(i, "x")

    def worker_command(self, ctx: Context) -> list[str]:
        return [
            PY, "-m", "huey.bin.huey_consumer", "bench.workers.huey_app.huey",
            "-w", str(self.threads), "-k", "thread", "-q",
        ]  # fmt: skip


class Huey2(Huey):
    name, threads = "huey-2", 2


class Huey4(Huey):
    name, threads = "huey-4", 4


class Huey8(Huey):
    name, threads = "huey-8", 8


# -- RabbitMQ peers -------------------------------------------------------------------


class _OnLoop(System):
    """A peer with an async client: opened on an event loop of its own at setup, closed with
    the producer; the synchronous producer calls run their coroutines on it."""

    loop: asyncio.AbstractEventLoop

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._open())

    async def _open(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    def run(self, step: Any) -> Any:
        return self.loop.run_until_complete(step)

    def close_producer(self) -> None:
        self.loop.run_until_complete(self._close())
        self.loop.close()


class _Amqp(System):
    family = "rabbitmq"
    server = "rabbitmq"

    def setup(self, ctx: Context) -> None:
        self.vhost = f"bench_{self.name.replace('-', '_')}_{ctx.suffix}"
        self.url = services.amqp_create_vhost(self.vhost)
        os.environ["BENCH_AMQP_URL_VHOST"] = self.env["BENCH_AMQP_URL_VHOST"] = self.url

    def teardown(self, ctx: Context) -> None:
        services.amqp_delete_vhost(self.vhost)


class Dramatiq(_Amqp):
    """Dramatiq, RabbitmqBroker with confirm_delivery, 1 process x 8 threads, acks after the job."""

    name = "dramatiq"
    thread_safe_enqueue = True  # RabbitmqBroker keeps a connection per thread

    def unavailable(self) -> str | None:
        return _missing("dramatiq", "pika") or services.amqp_available()

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        from .workers import dramatiq_app

        self.actor = dramatiq_app.noop_actor

    def enqueue_one(self, i: int) -> None:
        self.actor.send(i, "x")

    def close_producer(self) -> None:
        import dramatiq

        dramatiq.get_broker().close()

    def worker_command(self, ctx: Context) -> list[str]:
        return [
            PY, "-m", "dramatiq", "bench.workers.dramatiq_app",
            "--processes", "1", "--threads", str(WORKERS),
        ]  # fmt: skip


class Celery(_Amqp):
    """Celery on RabbitMQ: acks_late, confirm_publish, threads pool of 8."""

    name = "celery"

    def unavailable(self) -> str | None:
        return _missing("celery") or services.amqp_available()

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        from .workers import celery_app

        self.task = celery_app.noop_task

    def enqueue_one(self, i: int) -> None:
        self.task.delay(i, "x")

    def worker_command(self, ctx: Context) -> list[str]:
        return [
            PY, "-m", "celery", "-A", "bench.workers.celery_app", "worker",
            "-P", "threads", "-c", str(WORKERS), "-Q", QUEUE, "-l", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip


class AioPika(_OnLoop, _Amqp):
    """Raw aio-pika: durable queue, persistent messages, confirms; consumer prefetch 16, manual ack."""

    name = "aio-pika"
    has_batch = True

    def unavailable(self) -> str | None:
        return _missing("aio_pika") or services.amqp_available()

    async def _open(self) -> None:
        import aio_pika

        self.connection = await aio_pika.connect(self.url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        await self.channel.declare_queue(QUEUE, durable=True)

    async def _publish(self, items: list[int]) -> None:
        import aio_pika

        exchange = self.channel.default_exchange
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        json.dumps([i, "x"]).encode(),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json",
                    ),
                    routing_key=QUEUE,
                    mandatory=True,
                )
                for i in items
            )
        )

    async def _close(self) -> None:
        await self.connection.close()

    def enqueue_one(self, i: int) -> None:
        self.run(self._publish([i]))

    def enqueue_batch(self, items: list[int]) -> None:
        self.run(self._publish(items))

    def worker_command(self, ctx: Context) -> list[str]:
        return [PY, "-m", "bench.workers.aiopika_worker"]


class Aiormq(_OnLoop, _Amqp):
    """The raw AMQP limit: aiormq (aio-pika's own protocol layer), confirms, persistent messages;
    the consumer runs the job on the event loop at oddjob's prefetch (46) and acks in batches."""

    name = "aiormq"
    has_batch = True

    def unavailable(self) -> str | None:
        return _missing("aiormq") or services.amqp_available()

    async def _open(self) -> None:
        from .workers import aiormq_worker

        self.env["BENCH_AMQP_PREFETCH"] = str(aiormq_worker.PREFETCH)
        self.publisher = await aiormq_worker.Publisher.open(self.url)

    async def _close(self) -> None:
        await self.publisher.close()

    def enqueue_one(self, i: int) -> None:
        self.run(self.publisher.publish([i]))

    def enqueue_batch(self, items: list[int]) -> None:
        self.run(self.publisher.publish(items))

    def worker_command(self, ctx: Context) -> list[str]:
        return [PY, "-m", "bench.workers.aiormq_worker"]


# -- PostgreSQL peers -----------------------------------------------------------------


class _Pg(System):
    family = "postgres"
    server = "postgres"

    def setup(self, ctx: Context) -> None:
        self.db = f"bench_{self.name.replace('-', '_')}_{ctx.suffix}"
        self.dsn = services.pg_create_database(self.db)
        os.environ["BENCH_PG_DSN_DB"] = self.env["BENCH_PG_DSN_DB"] = self.dsn

    def before_worker(self) -> None:
        services.pg_analyze(self.dsn)

    def transactions(self) -> int | None:
        return services.pg_transactions(self.db)

    def teardown(self, ctx: Context) -> None:
        services.pg_drop_database(self.db)


class Procrastinate(_Pg):
    """procrastinate 3 (psycopg), worker --concurrency 8; finished jobs stay in the table."""

    name = "procrastinate"
    has_batch = True

    def unavailable(self) -> str | None:
        return _missing("procrastinate") or services.pg_available()

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        from .workers import procrastinate_app

        self.app = procrastinate_app.app
        self.task = procrastinate_app.noop_task
        self.app.open()
        self.app.schema_manager.apply_schema()

    def enqueue_one(self, i: int) -> None:
        self.task.defer(i=i, s="x")

    def enqueue_batch(self, items: list[int]) -> None:
        self.task.batch_defer(*({"i": i, "s": "x"} for i in items))

    def close_producer(self) -> None:
        self.app.close()

    def worker_command(self, ctx: Context) -> list[str]:
        return [
            PY, "-m", "procrastinate", "--app", "bench.workers.procrastinate_app.app",
            "worker", "--concurrency", str(WORKERS), "--queues", QUEUE,
        ]  # fmt: skip


class Pgqueuer(_OnLoop, _Pg):
    """pgqueuer (psycopg driver), default batch size 10; sync job run via an 8-thread executor."""

    name = "pgqueuer"
    has_batch = True

    def unavailable(self) -> str | None:
        return _missing("pgqueuer") or services.pg_available()

    async def _open(self) -> None:
        import psycopg
        from pgqueuer.db import PsycopgDriver
        from pgqueuer.queries import Queries

        self.conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        self.queries = Queries(PsycopgDriver(self.conn))
        await self.queries.install()

    async def _close(self) -> None:
        await self.conn.close()

    def enqueue_one(self, i: int) -> None:
        self.run(self.queries.enqueue("noop", f"{i},x".encode(), 0))

    def enqueue_batch(self, items: list[int]) -> None:
        n = len(items)
        payloads: list[bytes | None] = [f"{i},x".encode() for i in items]
        self.run(self.queries.enqueue(["noop"] * n, payloads, [0] * n))

    def worker_command(self, ctx: Context) -> list[str]:
        return [PY, "-m", "bench.workers.pgqueuer_app"]


RAW_SCHEMA = """
CREATE TABLE jobs (
    id uuid PRIMARY KEY,
    queue text NOT NULL,
    target text NOT NULL,
    arguments jsonb NOT NULL,
    run_at timestamptz NOT NULL,
    state text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX jobs_claim_order ON jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('scheduled', 'ready', 'retrying');
"""
"""A job row equivalent to oddjob-postgres's hot columns, with the same claim index."""

RAW_BATCH_INSERT = """
INSERT INTO jobs (id, queue, target, arguments, run_at, state, priority)
SELECT id, 'bench', 'bench.jobs:noop', arguments, run_at, 'ready', 0
FROM unnest(%s::uuid[], %s::jsonb[], %s::timestamptz[]) AS t(id, arguments, run_at)
"""
RAW_SINGLE_INSERT = """
INSERT INTO jobs (id, queue, target, arguments, run_at, state, priority)
VALUES (%s, 'bench', 'bench.jobs:noop', %s, %s, 'ready', 0)
"""


def raw_rows(items: list[int]) -> tuple[list[uuid.UUID], list[str], list[datetime]]:
    """What a client builds per job, inside the timed region: a fresh id, JSON arguments, run_at."""
    now = datetime.now(UTC)
    return (
        [uuid.uuid4() for _ in items],
        [json.dumps({"i": i, "s": "x"}) for i in items],
        [now] * len(items),
    )


class RawSkipLocked(_Pg):
    """Raw psycopg loop on an equivalent job row (uuid id, queue, target, jsonb arguments, run_at,
    state, priority, oddjob's claim index): 8 threads, each claims 10 in claim order with
    FOR UPDATE SKIP LOCKED, runs them, marks them succeeded (rows kept), commits."""

    name = "raw-skip-locked"
    has_batch = True

    def unavailable(self) -> str | None:
        return _missing("psycopg") or services.pg_available()

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        import psycopg

        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.conn.execute(RAW_SCHEMA)

    def enqueue_one(self, i: int) -> None:
        ids, arguments, run_at = raw_rows([i])
        self.conn.execute(RAW_SINGLE_INSERT, (ids[0], arguments[0], run_at[0]))

    def enqueue_batch(self, items: list[int]) -> None:
        self.conn.execute(RAW_BATCH_INSERT, raw_rows(items))

    def close_producer(self) -> None:
        self.conn.close()

    def worker_command(self, ctx: Context) -> list[str]:
        return [PY, "-m", "bench.workers.rawpg_worker"]


ALL: list[type[System]] = [
    OddjobMemory,
    OddjobMemoryBare,
    OddjobMemoryTraced,
    OddjobFilesystem,
    Huey,
    Huey2,
    Huey4,
    Huey8,
    OddjobRabbitmq,
    OddjobRabbitmqClassic,
    OddjobRabbitmqPrefetch16,
    Dramatiq,
    Celery,
    AioPika,
    Aiormq,
    OddjobPostgres,
    Procrastinate,
    Pgqueuer,
    RawSkipLocked,
    OddjobSqlserver,
]


def by_name() -> dict[str, type[System]]:
    return {cls().name: cls for cls in ALL}
