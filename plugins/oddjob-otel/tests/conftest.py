"""Backends the tracing tests run on: the filesystem, and PostgreSQL / RabbitMQ when installed.

A backend whose plugin is not installed is skipped (this plugin's tests run in
venvs with only some backends); a server that is down skips locally and fails
under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oddjob_core.testing.services import service_unavailable

POSTGRES_DSN = os.environ.get(
    "ODDJOB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
RABBITMQ_URL = os.environ.get("ODDJOB_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _installed(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed in this environment")


@pytest.fixture(params=["filesystem", "postgres", "rabbitmq"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Settings (as in oddjob.toml) of a fresh, private store of one backend; removed after."""
    name = request.param
    if name == "filesystem":
        yield {"storage": "filesystem", "filesystem": {"path": str(tmp_path / "store")}}
    elif name == "postgres":
        _installed("oddjob_postgres")
        import psycopg

        try:
            psycopg.connect(POSTGRES_DSN, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            service_unavailable(f"PostgreSQL is not reachable at {POSTGRES_DSN}: {exc}")
        schema = f"oddjob_otel_{secrets.token_hex(5)}"
        yield {"storage": "postgres", "postgres": {"dsn": POSTGRES_DSN, "schema": schema}}
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    else:
        _installed("oddjob_rabbitmq")
        from oddjob_core import Oddjob

        prefix = f"oddjob-otel-{secrets.token_hex(4)}."
        settings = {"storage": "rabbitmq", "rabbitmq": {"url": RABBITMQ_URL, "prefix": prefix}}
        try:
            Oddjob(**settings).storage.close()
        except Exception as exc:
            service_unavailable(f"RabbitMQ is not reachable at {RABBITMQ_URL}: {exc}")
        yield settings
        with Oddjob(**settings) as app:
            delete = getattr(app.storage, "delete_topology", None)
            if delete is not None:
                delete(["default"])
