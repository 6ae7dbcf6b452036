"""``oddjob sqlserver migrate|status`` through click's test runner, standalone and in the core CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from oddjob_sqlserver import SqlServerOptions
from oddjob_sqlserver.cli import sqlserver_group
from oddjob_sqlserver.migrations import LATEST


def test_print_shows_the_ddl_without_connecting() -> None:
    result = CliRunner().invoke(
        sqlserver_group,
        [
            "migrate",
            "--print",
            "--schema",
            "jobs_here",
            "--table-prefix",
            "app1_",
            # a server that does not exist: --print must not try it
            "--connection-string",
            "DRIVER={No Such Driver};SERVER=10.255.255.1,1;PWD=x",
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "CREATE TABLE [jobs_here].[app1_jobs]" in out
    assert "PRIMARY KEY CLUSTERED (seq)" in out
    assert "CREATE UNIQUE NONCLUSTERED INDEX [UX_app1_jobs_id]" in out
    assert "WHERE state IN (N'scheduled', N'ready', N'retrying', N'running')" in out
    assert "sp_getapplock" in out
    assert out.rstrip().endswith("COMMIT TRANSACTION;\nGO")


def test_print_uses_the_defaults_without_any_configuration() -> None:
    result = CliRunner().invoke(sqlserver_group, ["migrate", "--print"])
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE [oddjob].[jobs]" in result.output


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--schema", "Bad-Name", "plain SQL Server identifier"),
        ("--schema", "x];DROP TABLE t;--", "plain SQL Server identifier"),
        ("--table-prefix", "a]b", "table_prefix"),
    ],
)
def test_unsafe_names_are_refused(flag: str, value: str, words: str) -> None:
    result = CliRunner().invoke(sqlserver_group, ["migrate", "--print", flag, value])
    assert result.exit_code == 1
    assert words in result.output
    assert "Traceback" not in result.output


def test_core_cli_offers_the_group_and_reads_the_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from oddjob_sqlserver import plugin

    from oddjob_core import cli
    from oddjob_core.plugins import PluginRegistry

    registry = PluginRegistry(entry_points=False, extra=[("sqlserver", plugin)])
    monkeypatch.setenv("ODDJOB_SQLSERVER__SCHEMA", "from_env")
    monkeypatch.setenv("ODDJOB_SQLSERVER__TABLE_PREFIX", "t_")
    result = CliRunner().invoke(cli.build_cli(registry), ["sqlserver", "migrate", "--print"])
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE [from_env].[t_jobs]" in result.output
    assert "sqlserver" in registry.storage_names()


# -- against a live server (ODDJOB_SQLSERVER_DSN) --------------------------------------


def test_migrate_then_status_on_a_live_server(dsn: str, schema: str) -> None:
    runner = CliRunner()
    base = ["--connection-string", dsn, "--schema", schema]
    status = runner.invoke(sqlserver_group, ["status", *base])
    assert status.exit_code == 1, status.output
    assert "pending migration 1" in status.output
    first = runner.invoke(sqlserver_group, ["migrate", *base])
    assert first.exit_code == 0, first.output
    assert f"{LATEST} applied now" in first.output
    again = runner.invoke(sqlserver_group, ["migrate", *base])
    assert again.exit_code == 0, again.output
    assert "0 applied now" in again.output
    status = runner.invoke(sqlserver_group, ["status", *base])
    assert status.exit_code == 0, status.output


def test_printed_script_applies_on_a_live_server_batch_by_batch(
    admin: Callable[[], Any], schema: str, make_options: Callable[..., SqlServerOptions]
) -> None:
    """What `sqlcmd -i` would do: split at GO, run each batch on one session."""
    from oddjob_sqlserver import SqlServerStorage

    printed = CliRunner().invoke(sqlserver_group, ["migrate", "--print", "--schema", schema])
    assert printed.exit_code == 0, printed.output
    text = printed.output
    batches = [b for b in text.split("\nGO\n") if b.strip()]
    conn = admin()
    try:
        for batch in batches:
            cursor = conn.execute(batch)
            while cursor.nextset():
                pass
            cursor.close()
    finally:
        conn.close()
    storage = SqlServerStorage(make_options(migrate_on_start=False))  # finds the schema current
    storage.close()
