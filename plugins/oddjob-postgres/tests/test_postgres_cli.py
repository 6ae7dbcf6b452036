"""``oddjob postgres migrate|status``, run through click's test runner (standalone and in the core CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from oddjob_postgres.cli import postgres_group
from oddjob_postgres.migrations import LATEST, applied_version

from oddjob_core.testing.cli import oddjob


def test_print_shows_the_sql_without_connecting() -> None:
    result = CliRunner().invoke(
        postgres_group,
        [
            "migrate",
            "--print",
            "--schema",
            "jobs_here",
            "--dsn",
            "postgresql://x:pw@127.0.0.1:1/nope",
        ],
    )
    assert result.exit_code == 0, result.output
    assert 'CREATE TABLE "jobs_here".jobs' in result.output
    assert "WHERE state IN ('scheduled', 'ready', 'retrying')" in result.output
    assert result.output.rstrip().endswith("COMMIT;")


def test_printed_script_applies_cleanly_with_psql_semantics(
    admin: psycopg.Connection[Any], schema: str
) -> None:
    script = CliRunner().invoke(postgres_group, ["migrate", "--print", "--schema", schema]).output
    admin.execute(script.encode())  # what `... --print | psql` would run
    assert applied_version(admin, schema) == LATEST


def test_migrate_then_status(dsn: str, schema: str, admin: psycopg.Connection[Any]) -> None:
    runner = CliRunner()
    status = runner.invoke(postgres_group, ["status", "--dsn", dsn, "--schema", schema])
    assert status.exit_code == 1
    assert "pending migration 1" in status.output
    first = runner.invoke(postgres_group, ["migrate", "--dsn", dsn, "--schema", schema])
    assert first.exit_code == 0, first.output
    assert f"{LATEST} applied now" in first.output
    again = runner.invoke(postgres_group, ["migrate", "--dsn", dsn, "--schema", schema])
    assert again.exit_code == 0, again.output
    assert "0 applied now" in again.output
    status = runner.invoke(postgres_group, ["status", "--dsn", dsn, "--schema", schema])
    assert status.exit_code == 0, status.output
    assert applied_version(admin, schema) == LATEST


def test_unreachable_server_is_one_clear_line_without_password() -> None:
    result = CliRunner().invoke(
        postgres_group, ["migrate", "--dsn", "postgresql://u:hunter2@127.0.0.1:1/db"]
    )
    assert result.exit_code == 1
    assert "127.0.0.1:1, database db" in result.output
    assert "hunter2" not in result.output


def test_bad_schema_is_refused() -> None:
    result = CliRunner().invoke(postgres_group, ["migrate", "--print", "--schema", "Bad-Name"])
    assert result.exit_code == 1
    assert "plain PostgreSQL identifier" in result.output


def test_core_cli_offers_the_command_and_reads_the_configuration(
    monkeypatch: pytest.MonkeyPatch, dsn: str, schema: str
) -> None:
    from oddjob_postgres import plugin

    from oddjob_core import cli
    from oddjob_core.plugins import PluginRegistry

    registry = PluginRegistry(entry_points=False, extra=[("postgres", plugin)])
    monkeypatch.setenv("ODDJOB_POSTGRES__SCHEMA", schema)
    monkeypatch.setenv("ODDJOB_POSTGRES__DSN", dsn)
    result = CliRunner().invoke(cli.build_cli(registry), ["postgres", "migrate"])
    assert result.exit_code == 0, result.output
    assert f"schema '{schema}'" in result.output


def test_a_bad_configured_option_names_itself(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Options come from the oddjob configuration under the core CLI; a bad one is a clear error."""
    from oddjob_postgres import plugin

    from oddjob_core.cli import build_cli
    from oddjob_core.plugins import PluginRegistry

    config = tmp_path / "oddjob.toml"
    config.write_text('[postgres]\nschema = "from_config"\npool_max_size = "lots"\n')
    registry = PluginRegistry(entry_points=False, extra=[("postgres", plugin)])
    cli = build_cli(registry)
    result = CliRunner().invoke(cli, ["--config", str(config), "postgres", "migrate", "--print"])
    assert result.exit_code == 1
    assert "bad postgres option" in result.output
    assert "pool_max_size" in result.output
    config.write_text('[postgres]\nschema = "from_config"\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "postgres", "migrate", "--print"])
    assert result.exit_code == 0, result.output
    assert "schema 'from_config'" in result.output  # the configured value, no flag given
    result = CliRunner().invoke(
        cli, ["--config", str(config), "postgres", "migrate", "--print", "--schema", "flag"]
    )
    assert "schema 'flag'" in result.output  # the flag wins


def test_status_exit_codes_through_the_real_command(dsn: str, schema: str, tmp_path: Path) -> None:
    """The installed ``oddjob`` script keeps the documented codes (CliRunner hid a lost 1)."""
    status = oddjob("postgres", "status", "--dsn", dsn, "--schema", schema, cwd=tmp_path)
    assert status.returncode == 1, status.stdout + status.stderr
    assert "pending migration 1" in status.stdout
    migrate = oddjob("postgres", "migrate", "--dsn", dsn, "--schema", schema, cwd=tmp_path)
    assert migrate.returncode == 0, migrate.stderr
    assert (
        oddjob("postgres", "status", "--dsn", dsn, "--schema", schema, cwd=tmp_path).returncode == 0
    )
    unreachable = oddjob(
        "postgres", "status", "--dsn", "postgresql://postgres@127.0.0.1:1/test", cwd=tmp_path
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("Error: ")
