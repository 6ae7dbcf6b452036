"""Fixtures: a live dashboard server (uvicorn in a thread) per backend, and headless Chromium.

Backends: memory, filesystem (a temp folder), PostgreSQL (a fresh schema,
dropped after), RabbitMQ (a fresh name prefix, its queues deleted after) and SQL
Server (a fresh schema, dropped after) when ``ODDJOB_SQLSERVER_DSN`` names one.
PostgreSQL and RabbitMQ skip when down (fail under ``CI=true``); SQL Server
skips visibly without that variable (no server runs on this machine or in CI). The browser
is Debian's ``chromium`` driven by Playwright (``ODDJOB_TEST_CHROMIUM`` overrides
the path); Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.types import ASGIApp

from oddjob_core import Oddjob
from oddjob_core.errors import StorageUnavailable
from oddjob_core.testing import service_unavailable

TESTS = Path(__file__).parent
POSTGRES_DSN = os.environ.get(
    "ODDJOB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
RABBITMQ_URL = os.environ.get("ODDJOB_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
CHROMIUM = os.environ.get("ODDJOB_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SQLSERVER_DSN = os.environ.get("ODDJOB_SQLSERVER_DSN", "")  # an ODBC connection string
BACKENDS = ["memory", "filesystem", "postgres", "rabbitmq", "sqlserver"]


class LiveServer:
    """Serves an ASGI app on a free loopback port from a background thread."""

    def __init__(self, app: ASGIApp) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(300):
            if self.server.started:
                return self
            self.thread.join(0.05)
        raise RuntimeError("the dashboard test server did not start within 15 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


def _settings(backend: str, tmp_path: Path, name: str) -> dict[str, Any]:
    common: dict[str, Any] = {
        "allowed_prefixes": ["dashjobs"],
        "poll_interval": 0.1,
        "retry": {"max_retries": 0},
    }
    if backend == "memory":
        return {**common, "storage": "memory"}
    if backend == "filesystem":
        return {**common, "storage": "filesystem", "filesystem": {"path": str(tmp_path / "store")}}
    if backend == "postgres":
        pytest.importorskip("oddjob_postgres")
        return {**common, "storage": "postgres", "postgres": {"dsn": POSTGRES_DSN, "schema": name}}
    if backend == "sqlserver":
        pytest.importorskip("oddjob_sqlserver")
        if not SQLSERVER_DSN:
            pytest.skip(
                "set ODDJOB_SQLSERVER_DSN=... (an ODBC connection string) to run on SQL Server"
            )
        return {
            **common,
            "storage": "sqlserver",
            "sqlserver": {"connection_string": SQLSERVER_DSN, "schema": name},
        }
    pytest.importorskip("oddjob_rabbitmq")
    return {
        **common,
        "storage": "rabbitmq",
        "rabbitmq": {"url": RABBITMQ_URL, "prefix": name + ".", "connect_timeout": 5.0},
    }


def _cleanup(backend: str, app: Oddjob, name: str) -> None:
    if backend == "postgres":
        import psycopg

        with psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    elif backend == "sqlserver":
        import pyodbc  # type: ignore[import-not-found,unused-ignore]

        conn = pyodbc.connect(SQLSERVER_DSN, autocommit=True, timeout=10)
        try:
            for table in ("jobs", "workers", "kv", "schema_migrations"):  # kv: migration 4
                conn.execute(f"DROP TABLE IF EXISTS [{name}].[{table}]")
            conn.execute(f"DROP SCHEMA IF EXISTS [{name}]")
        finally:
            conn.close()
    elif backend == "rabbitmq":
        storage: Any = app.storage
        used = sorted(storage.known_queues)
        if used:
            storage.delete_topology(used)


@pytest.fixture(params=BACKENDS)
def oddjob_app(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Oddjob]:
    """An ``Oddjob`` on a fresh namespace of each backend; dashjobs importable."""
    monkeypatch.syspath_prepend(str(TESTS))
    backend: str = request.param
    name = f"oddjob_dash_{secrets.token_hex(4)}"
    app = Oddjob(**_settings(backend, tmp_path, name))
    try:
        app.storage  # noqa: B018 - connect now: skip (or fail in CI) when the service is down
    except StorageUnavailable as exc:
        service_unavailable(f"{backend} is not reachable: {exc}")
    try:
        yield app
    finally:
        try:
            _cleanup(backend, app, name)
        finally:
            app.close()


@pytest.fixture
def live(oddjob_app: Oddjob) -> Iterator[Callable[..., LiveServer]]:
    """Start the dashboard of ``oddjob_app`` (keyword arguments go to ``create_app``)."""
    from oddjob_dashboard import create_app

    servers: list[LiveServer] = []

    def start(**kwargs: Any) -> LiveServer:
        server = LiveServer(create_app(oddjob_app, **kwargs)).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's package) under Playwright; skip if either is missing.

    Module-scoped, never session-scoped: Playwright's sync API leaves its event loop
    marked as running on the main thread until it stops, and later tests in the same
    process (RabbitMQ's caller-thread publisher checks for a running loop) would see it.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium package")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page; a JavaScript dialog fails the test (XSS)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    dialogs: list[str] = []
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.set_default_timeout(20_000)
    try:
        yield tab
    finally:
        context.close()
    assert not dialogs, f"the page ran injected script: dialogs {dialogs}"
