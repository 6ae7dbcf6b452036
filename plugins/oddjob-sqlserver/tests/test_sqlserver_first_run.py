"""What would break first on a real SQL Server (issue #18), tested without one.

Unit tests of classification and parameter handling: pyodbc errors are built
with the exact text the drivers produce (Driver 18 and FreeTDS), and where a
retry loop is involved, the pool's connect function raises them: a stand-in
for the driver's login, not for a database. Statement shapes are checked by
text here and by the T-SQL grammar in test_sqlserver_grammar.py. None of this
proves behaviour on a server: `oddjob doctor` and the live suites
(``ODDJOB_SQLSERVER_DSN``) do.
"""

from __future__ import annotations

import time

import pyodbc  # type: ignore[import-not-found,unused-ignore]
import pytest
from oddjob_sqlserver import SqlServerOptions
from oddjob_sqlserver.checks import (
    MAX_PARAMETERS,
    check_compatibility,
    check_not_newer,
    check_parameter_count,
)
from oddjob_sqlserver.database import (
    Database,
    Pool,
    error_numbers,
    is_certificate_error,
    is_transient,
)
from oddjob_sqlserver.migrations import LATEST
from oddjob_sqlserver.names import Names
from oddjob_sqlserver.odbc import scrub
from oddjob_sqlserver.statements import Statements, count_markers

from oddjob_core.errors import ConfigError, StorageError, StorageUnavailable

DRIVER18 = "[Microsoft][ODBC Driver 18 for SQL Server]"


def odbc_error(state: str, text: str) -> pyodbc.Error:
    return pyodbc.Error(state, text)


# -- 9: only the driver's trailing native error code counts ------------------------------


def test_a_number_inside_the_message_text_is_not_an_error_code() -> None:
    exc = odbc_error(
        "23000",
        f"{DRIVER18}[SQL Server]Violation of PRIMARY KEY constraint 'PK_x'. Cannot insert "
        "duplicate key in object 'dbo.t'. The duplicate key value is (233). (2627) "
        "(SQLExecDirectW)",
    )
    assert error_numbers(exc) == {2627}
    assert not is_transient(exc)  # (233), "no process on the pipe", is only the key value


def test_every_diagnostic_record_contributes_its_code() -> None:
    exc = odbc_error(
        "40001",
        f"{DRIVER18}[SQL Server]Transaction (Process ID 61) was deadlocked on lock resources "
        "with another process and has been chosen as the deadlock victim. Rerun the "
        f"transaction. (1205) (SQLExecDirectW); {DRIVER18}[SQL Server]The statement has been "
        "terminated. (3621)",
    )
    assert error_numbers(exc) == {1205, 3621}
    assert is_transient(exc)


def test_freetds_codes_are_read_too() -> None:
    exc = odbc_error(
        "08S01",
        "[FreeTDS][SQL Server]Unable to connect: Adaptive Server is unavailable or does not "
        "exist (20009) (SQLDriverConnect)",
    )
    assert error_numbers(exc) == {20009}


# -- 2: a self-signed certificate is a configuration error, not an outage -----------------

CERTIFICATE = odbc_error(
    "08001",
    f"{DRIVER18}SSL Provider: [error:0A000086:SSL routines::certificate verify failed:"
    "self-signed certificate] (-1) (SQLDriverConnect)",
)


def failing_database(exc: BaseException, **options: object) -> Database:
    """A Database whose every login raises ``exc`` (the driver's connect, stood in for)."""
    values: dict[str, object] = {"server": "db.example", "retry_timeout": 10.0}
    values.update(options)
    db = Database(SqlServerOptions(**values))  # type: ignore[arg-type]

    def connect() -> pyodbc.Connection:
        raise exc

    db.pool = Pool(connect, 1, 1.0)
    return db


def test_untrusted_certificate_fails_at_once_naming_the_fix() -> None:
    assert is_certificate_error(CERTIFICATE)
    db = failing_database(CERTIFICATE)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        db.run("migrating", lambda cur, retried: None)
    assert time.monotonic() - started < 2, "retried as if the server were unreachable"
    assert "trust_server_certificate = true" in str(info.value)
    assert "trusted CA" in str(info.value)


# -- 8: a failover outlasts the ordinary retry budget -------------------------------------


def test_azure_failover_is_retried_past_retry_timeout() -> None:
    failover = odbc_error(
        "42000",
        f"{DRIVER18}[SQL Server]Database 'jobs' on server 'x' is not currently available. "
        "Please retry the connection later. (40613) (SQLDriverConnect)",
    )
    db = failing_database(failover, retry_timeout=0.2, failover_timeout=1.2)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        db.run("migrating", lambda cur, retried: None)
    assert time.monotonic() - started >= 1.1
    assert str(info.value).startswith("cannot reach SQL Server db.example")


def test_an_unreachable_server_keeps_the_short_budget() -> None:
    down = odbc_error(
        "08S01",
        "[FreeTDS][SQL Server]Unable to connect: Adaptive Server is unavailable or does not "
        "exist (20009) (SQLDriverConnect)",
    )
    db = failing_database(down, retry_timeout=0.2, failover_timeout=30)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        db.run("migrating", lambda cur, retried: None)
    assert time.monotonic() - started < 5


def test_migrations_option_defaults_outlast_a_failover() -> None:
    assert SqlServerOptions().failover_timeout >= 60
    with pytest.raises(ValueError, match="failover_timeout"):
        SqlServerOptions(failover_timeout=-1)


# -- 11: scrubbing a short password does not mangle words ---------------------------------


def test_a_short_password_is_scrubbed_only_where_it_stands_alone() -> None:
    conn = "DRIVER={FreeTDS};SERVER=h;UID=sa;PWD=x"
    text = "Adaptive Server is unavailable or does not exist; login sa with x failed"
    assert scrub(text, conn) == (
        "Adaptive Server is unavailable or does not exist; login sa with *** failed"
    )


def test_a_long_password_is_scrubbed_anywhere() -> None:
    conn = "DRIVER={FreeTDS};SERVER=h;UID=sa;PWD=hunter2-Secret"
    assert "hunter2" not in scrub("bad token xhunter2-Secretx here", conn)


# -- 1 and 11: compatibility level, a schema newer than the code, 2,100 parameters --------


def test_compatibility_level_below_130_is_refused_naming_the_alter() -> None:
    check_compatibility(130, "jobs", "SQL Server x")
    check_compatibility(160, "jobs", "SQL Server x")
    with pytest.raises(ConfigError) as info:
        check_compatibility(120, "jobs", "SQL Server x")
    assert "ALTER DATABASE [jobs] SET COMPATIBILITY_LEVEL = 130" in str(info.value)


def test_compatibility_statement_reads_the_current_database() -> None:
    sql = Statements(Names()).compatibility_level
    assert "compatibility_level" in sql
    assert "DB_ID()" in sql


def test_a_schema_newer_than_the_code_is_refused() -> None:
    check_not_newer(LATEST, "schema 'oddjob'", "SQL Server x")
    with pytest.raises(ConfigError, match="newer than this oddjob-sqlserver"):
        check_not_newer(LATEST + 1, "schema 'oddjob'", "SQL Server x")


def test_argument_search_stays_under_the_parameter_limit() -> None:
    st = Statements(Names())
    sql = st.search(("arguments",), n_states=0, n_arguments=700)
    assert count_markers(sql) > MAX_PARAMETERS
    with pytest.raises(ConfigError, match="at most 2100"):
        check_parameter_count(count_markers(sql), "searching")
    check_parameter_count(count_markers(st.search(("arguments",), 0, 10)), "searching")


# -- 3 and 5: the worker's reads skip locked rows, the claim can only seek ----------------


def test_next_due_never_waits_on_locked_rows() -> None:
    sql = Statements(Names()).next_due
    assert sql.count("WITH (READPAST)") == 2


def test_claim_is_pinned_to_a_seek() -> None:
    assert "FORCESEEK" in Statements(Names()).claim


def test_storage_error_stays_distinct_from_config_error() -> None:
    assert not issubclass(ConfigError, StorageError)  # start-up refusals are not retried


# -- 7: a connection lent to the caller is not pooled again --------------------------------


class StandIn:
    """Counts what the pool does with a connection (no driver involved)."""

    def __init__(self) -> None:
        self.closed = False
        self.rolled_back = 0

    def rollback(self) -> None:
        self.rolled_back += 1

    def close(self) -> None:
        self.closed = True


def test_a_lent_connection_is_closed_not_pooled() -> None:
    made: list[StandIn] = []

    def connect() -> StandIn:
        made.append(StandIn())
        return made[-1]

    pool = Pool(connect, 2, 1.0)  # type: ignore[arg-type]
    with pool.connection(discard=True):
        pass
    with pool.connection(discard=True), pytest.raises(RuntimeError):
        raise RuntimeError("the caller's transaction failed")
    with pool.connection():
        pass
    with pool.connection():
        pass
    assert [c.closed for c in made] == [True, True, False]  # the last one was reused


# -- 10: retention sweeps: one worker at a time, low deadlock priority, READPAST -----------


def test_retention_sweep_takes_a_no_wait_applock_and_yields_to_claims() -> None:
    from oddjob_sqlserver.retention import sweep_statement

    st = Statements(Names())
    sql = sweep_statement(st.purge(["succeeded"], True, False), "oddjob:retention")
    assert "SET DEADLOCK_PRIORITY LOW;" in sql
    assert "@LockTimeout = 0" in sql
    assert "WITH (ROWLOCK, READPAST)" in sql
    assert "OUTPUT deleted.seq INTO @gone" in sql
    assert sql.index("SET DEADLOCK_PRIORITY NORMAL;") > sql.index("DELETE TOP")
    assert count_markers(sql) == 1


# -- 6: one plan for every batch size where the driver allows it ---------------------------


def test_json_documents_are_declared_nvarchar_max_only_on_microsoft_drivers() -> None:
    from oddjob_sqlserver.parameters import declares_nvarchar_max

    assert declares_nvarchar_max("libmsodbcsql-18.6.so.2.1")
    assert declares_nvarchar_max("msodbcsql18.dll")
    assert not declares_nvarchar_max("libtdsodbc.so")  # FreeTDS fails past 2,000 characters
