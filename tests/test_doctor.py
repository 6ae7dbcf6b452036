"""``oddjob doctor``: passes on the no-config default, fails readably on a broken store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from oddjob_core import hookimpl
from oddjob_core.backends import StorageBackend
from oddjob_core.cli import build_cli
from oddjob_core.memory import MemoryStorage
from oddjob_core.model import Claim
from oddjob_core.plugins import PluginRegistry
from oddjob_core.testing import service_unavailable


def test_doctor_passes_on_the_default_filesystem_store_with_no_config(tmp_path: Path) -> None:
    done = run_doctor(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "oddjob doctor: storage 'filesystem'" in done.stdout
    assert "conformance suite: " in done.stdout
    assert "worker smoke test: 5 passed, 0 failed" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("PASS: ")
    assert not (tmp_path / ".oddjob").exists(), "doctor touched the real store"


class PathOptions(msgspec.Struct, kw_only=True):
    path: str = "unused"


class LosesRetries(MemoryStorage):
    """A store that drops retried jobs on the floor: a bug doctor must catch."""

    name = "loses-retries"

    def retry(self, claim: Claim, run_at: Any, error: Any) -> None:
        self.complete(claim, None)


class SharedPerPath:
    """One store per path option, so every instance of one namespace sees the same jobs."""

    def __init__(self) -> None:
        self.stores: dict[str, MemoryStorage] = {}

    @hookimpl
    def oddjob_storage_backends(self) -> Sequence[StorageBackend]:
        def make(options: PathOptions) -> MemoryStorage:
            return self.stores.setdefault(options.path, LosesRetries())

        return [StorageBackend("loses-retries", make, "broken on purpose", PathOptions)]


def test_doctor_fails_with_a_readable_report_on_a_broken_store(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ODDJOB_STORAGE", "loses-retries")
    registry = PluginRegistry(extra=[("loses-retries", SharedPerPath())])
    result = CliRunner().invoke(build_cli(registry), ["doctor"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("FAIL: "), result.output
    assert "  FAIL retry after a failure" in result.output
    assert any(line.startswith("  FAIL test_") and "retry" in line for line in lines), result.output


def test_doctor_refuses_a_backend_it_cannot_isolate(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ODDJOB_STORAGE", "memory")
    result = CliRunner().invoke(build_cli(), ["doctor"])
    assert result.exit_code == 1
    assert "cannot isolate storage 'memory'" in result.output


POSTGRES_DSN = os.environ.get(
    "ODDJOB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
RABBITMQ_URL = os.environ.get("ODDJOB_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def doctor_with(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "oddjob.toml").write_text(config)
    return run_doctor(tmp_path)


def run_doctor(folder: Path) -> subprocess.CompletedProcess[str]:
    """``oddjob doctor`` in ``folder``, as a user runs it (no ODDJOB_* variables leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODDJOB_")}
    return subprocess.run(
        [sys.executable, "-m", "oddjob_core", "doctor"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def schema_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(POSTGRES_DSN) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (name,)
        ).fetchone()
    assert row is not None
    return bool(row[0])


def test_doctor_passes_on_postgres_and_drops_its_schemas(tmp_path: Path) -> None:
    psycopg = pytest.importorskip("psycopg")
    try:
        schema_exists("public")
    except psycopg.OperationalError as exc:
        service_unavailable(f"PostgreSQL is not reachable at {POSTGRES_DSN}: {exc}")
    done = doctor_with(tmp_path, f'storage = "postgres"\n[postgres]\ndsn = "{POSTGRES_DSN}"\n')
    assert done.returncode == 0, done.stdout + done.stderr
    assert "server_version:" in done.stdout
    assert "worker smoke test: 5 passed, 0 failed" in done.stdout
    # other sessions may run doctor at the same time: check the schema this run named
    named = re.search(r"schema (oddjob_doctor_[0-9a-f]+)", done.stdout)
    assert named is not None, done.stdout
    assert not schema_exists(named.group(1)), "doctor left its schema behind"


def test_doctor_passes_on_rabbitmq(tmp_path: Path) -> None:
    rabbitmq = pytest.importorskip("oddjob_rabbitmq")
    from oddjob_core.errors import StorageUnavailable

    try:
        rabbitmq.RabbitStorage(
            rabbitmq.RabbitOptions(url=RABBITMQ_URL, connect_timeout=5.0)
        ).close()
    except StorageUnavailable as exc:
        service_unavailable(f"RabbitMQ is not reachable at {RABBITMQ_URL}: {exc}")
    done = doctor_with(tmp_path, f'storage = "rabbitmq"\n[rabbitmq]\nurl = "{RABBITMQ_URL}"\n')
    assert done.returncode == 0, done.stdout + done.stderr
    assert "worker smoke test: 5 passed, 0 failed" in done.stdout


def test_doctor_passes_on_the_example_third_party_plugin(tmp_path: Path) -> None:
    pytest.importorskip("oddjob_example_sqlite")
    done = doctor_with(tmp_path, 'storage = "example-sqlite"\n')
    assert done.returncode == 0, done.stdout + done.stderr
    assert "worker smoke test: 5 passed, 0 failed" in done.stdout
    assert not (tmp_path / "oddjob.sqlite3").exists(), "doctor touched the real store"
