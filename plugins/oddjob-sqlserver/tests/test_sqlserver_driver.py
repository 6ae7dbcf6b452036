"""pyodbc loads a real SQL Server driver (FreeTDS) here: failures become oddjob's clear errors.

No server runs on these machines, but the driver does: connecting to a
closed port exercises the real login path, error classification, retries
and message scrubbing. CI installs FreeTDS (``.ci/run``); without it these
tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import time

import pyodbc  # type: ignore[import-not-found,unused-ignore]
import pytest
from click.testing import CliRunner
from oddjob_sqlserver import SqlServerOptions, SqlServerStorage
from oddjob_sqlserver.cli import sqlserver_group
from oddjob_sqlserver.database import Database, is_transient

from oddjob_core.errors import ConfigError, StorageUnavailable
from oddjob_core.testing import service_unavailable

PASSWORD = "hunter2-Secret"


@pytest.fixture
def freetds() -> str:
    drivers = [d for d in pyodbc.drivers() if "freetds" in d.lower()]
    if not drivers:
        service_unavailable(
            "the FreeTDS ODBC driver is not installed (apt-get install tdsodbc unixodbc)"
        )
    return str(drivers[0])


def closed_port_options(driver: str, **overrides: object) -> SqlServerOptions:
    values: dict[str, object] = {
        "driver": driver,
        "server": "127.0.0.1",
        "port": 1,
        "database": "jobsdb",
        "user": "worker",
        "password": PASSWORD,
        "connect_timeout": 1,
        "retry_timeout": 0.3,
    }
    values.update(overrides)
    return SqlServerOptions(**values)  # type: ignore[arg-type]


def test_closed_port_is_storage_unavailable_naming_server_and_database(freetds: str) -> None:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        SqlServerStorage(closed_port_options(freetds))
    text = str(info.value)
    assert "cannot reach SQL Server 127.0.0.1,1, database jobsdb, user worker:" in text
    assert "migrating schema 'oddjob'" in text
    assert "Check that SQL Server is running" in text
    assert PASSWORD not in text
    assert PASSWORD not in repr(info.value.__cause__)  # the chained driver error has none either
    assert time.monotonic() - started < 60  # bounded retries, not a hang


def test_the_driver_error_behind_it_is_transient_and_retried(
    freetds: str, caplog: pytest.LogCaptureFixture
) -> None:
    options = closed_port_options(freetds, retry_timeout=0.5)
    db = Database(options)
    try:
        with pytest.raises(StorageUnavailable) as info:
            db.run("probing", lambda cur, _: cur.execute("SELECT 1").fetchall())
    finally:
        db.close()
    cause = info.value.__cause__
    assert isinstance(cause, pyodbc.Error)
    assert is_transient(cause)
    assert "failed" in str(info.value)
    assert "time(s) within 0.5 s" in str(info.value)
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)


def test_password_in_a_raw_connection_string_is_not_shown(freetds: str) -> None:
    cs = f"DRIVER={{{freetds}}};SERVER=127.0.0.1;PORT=1;DATABASE=orders;UID=sa;PWD={PASSWORD};"
    options = SqlServerOptions(connection_string=cs, connect_timeout=1, retry_timeout=0.2)
    with pytest.raises(StorageUnavailable) as info:
        SqlServerStorage(options)
    assert "database orders, user sa" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_missing_driver_is_a_config_error_listing_installed_drivers(freetds: str) -> None:
    options = closed_port_options("No Such ODBC Driver 99")
    with pytest.raises(ConfigError) as info:
        SqlServerStorage(options)
    text = str(info.value)
    assert "No Such ODBC Driver 99" in text
    assert freetds in text  # the installed choices
    assert "apt-get install tdsodbc" in text
    assert PASSWORD not in text


def test_cli_migrate_against_a_closed_port_is_one_clear_line(freetds: str) -> None:
    cs = f"DRIVER={{{freetds}}};SERVER=127.0.0.1;PORT=1;DATABASE=jobsdb;UID=sa;PWD={PASSWORD};"
    result = CliRunner().invoke(
        sqlserver_group, ["migrate", "--connection-string", cs, "--retry-timeout", "0.3"]
    )
    assert result.exit_code == 1
    assert "Error: cannot reach SQL Server 127.0.0.1,1, database jobsdb, user sa:" in result.output
    assert "Traceback" not in result.output
    assert PASSWORD not in result.output


def test_app_and_cli_surface_the_same_clear_error(
    freetds: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oddjob_sqlserver import plugin

    from oddjob_core import Oddjob
    from oddjob_core.cli import build_cli
    from oddjob_core.plugins import PluginRegistry

    registry = PluginRegistry(entry_points=False, extra=[("sqlserver", plugin)])
    table = {
        "driver": freetds,
        "server": "127.0.0.1",
        "port": 1,
        "database": "jobsdb",
        "password": PASSWORD,
        "retry_timeout": 0.2,
    }
    app = Oddjob(storage="sqlserver", sqlserver=table, registry=registry)
    with pytest.raises(StorageUnavailable, match=r"127\.0\.0\.1,1, database jobsdb"):
        _ = app.storage
    monkeypatch.setenv("ODDJOB_STORAGE", "sqlserver")
    for key, value in table.items():
        monkeypatch.setenv(f"ODDJOB_SQLSERVER__{key.upper()}", str(value))
    result = CliRunner().invoke(build_cli(registry), ["queues"])
    assert result.exit_code != 0
    assert "database jobsdb" in str(result.exception) + result.output
    assert PASSWORD not in str(result.exception) + result.output


@pytest.mark.parametrize(
    ("args", "transient", "broken"),
    [
        (
            (
                "40001",
                "[40001] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Transaction "
                "(Process ID 53) was deadlocked on lock resources with another process and has "
                "been chosen as the deadlock victim. Rerun the transaction. (1205) (SQLExecDirectW)",
            ),
            True,
            False,
        ),
        (
            (
                "HY000",
                "[HY000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Lock request "
                "time out period exceeded. (1222) (SQLExecDirectW)",
            ),
            True,
            False,
        ),
        (
            (
                "08S01",
                "[08S01] [Microsoft][ODBC Driver 18 for SQL Server]Communication link failure (0) (SQLExecDirectW)",
            ),
            True,
            True,
        ),
        (
            (
                "HYT00",
                "[HYT00] [Microsoft][ODBC Driver 18 for SQL Server]Query timeout expired (0) (SQLExecDirectW)",
            ),
            True,
            False,
        ),
        (
            (
                "28000",
                "[28000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed for "
                "user 'sa'. (18456) (SQLDriverConnect)",
            ),
            False,
            False,
        ),
        (
            (
                "42S02",
                "[42S02] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid object "
                "name 'oddjob.jobs'. (208) (SQLExecDirectW)",
            ),
            False,
            False,
        ),
    ],
)
def test_driver_errors_are_classified(args: tuple[str, str], transient: bool, broken: bool) -> None:
    from oddjob_sqlserver.database import is_broken

    exc = pyodbc.Error(*args)
    assert is_transient(exc) is transient
    assert is_broken(exc) is broken


def test_permanent_errors_carry_the_fix(freetds: str) -> None:
    db = Database(closed_port_options(freetds))
    try:
        login = db.error(
            "claiming",
            pyodbc.Error("28000", f"Login failed for user 'worker'. PWD={PASSWORD} (18456)"),
        )
        missing = db.error("claiming", pyodbc.Error("42S02", "Invalid object name 'x'. (208)"))
    finally:
        db.close()
    assert "check the sqlserver user and password" in str(login)
    assert PASSWORD not in str(login)
    assert "oddjob sqlserver migrate" in str(missing)


def test_failed_connects_do_not_leak_pool_slots(freetds: str) -> None:
    db = Database(closed_port_options(freetds, pool_size=1, retry_timeout=0))
    try:
        for _ in range(3):  # a leaked slot would turn the second try into a pool timeout
            with pytest.raises(StorageUnavailable) as info:
                db.run("probing", lambda cur, _: cur.execute("SELECT 1").fetchall())
            assert "no pooled connection" not in str(info.value)
            assert "(20009)" in str(info.value)  # FreeTDS: server unavailable
    finally:
        db.close()


# -- Microsoft ODBC Driver 18 (from the mssql-python-odbc wheel, a test extra) -------------


@pytest.fixture
def driver18() -> str:
    """The path of Driver 18's shared library: unixODBC loads a DRIVER given as a path."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("mssql_python_odbc")
    if spec is None or not spec.submodule_search_locations:
        service_unavailable(
            "Microsoft ODBC Driver 18 is not installed (pip install mssql-python-odbc)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.glob("libs/linux/debian_ubuntu/x86_64/lib/libmsodbcsql-18*.so*"))
    if not found:
        service_unavailable(f"no Driver 18 library for this platform under {root}")
    return str(found[-1])


def test_driver18_closed_port_is_storage_unavailable_with_its_message(driver18: str) -> None:
    cs = f"DRIVER={driver18};SERVER=127.0.0.1,1;DATABASE=jobsdb;UID=sa;PWD={PASSWORD};Encrypt=no"
    options = SqlServerOptions(connection_string=cs, connect_timeout=1, retry_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        SqlServerStorage(options)
    text = str(info.value)
    assert text.startswith("cannot reach SQL Server 127.0.0.1,1, database jobsdb, user sa:"), text
    assert "[Microsoft][ODBC Driver 18 for SQL Server]" in text
    assert PASSWORD not in text
    cause = info.value.__cause__
    assert isinstance(cause, pyodbc.Error)
    assert is_transient(cause)
    assert time.monotonic() - started < 60
