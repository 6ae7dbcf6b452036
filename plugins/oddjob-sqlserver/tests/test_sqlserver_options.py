"""Options validation, ODBC connection strings, password scrubbing and row conversions (no server)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from oddjob_sqlserver import SqlServerOptions
from oddjob_sqlserver.names import Names
from oddjob_sqlserver.odbc import describe, parse_connection_string, scrub
from oddjob_sqlserver.rows import argument_filter, insert_document, to_db

from oddjob_core.errors import EnqueueError
from oddjob_core.testing import make_envelope


@pytest.mark.parametrize(
    "schema", ["", "1abc", "bad-name", "a b", "x]; DROP TABLE y; --", "ünïcode", "a" * 65]
)
def test_unsafe_schema_names_are_refused(schema: str) -> None:
    with pytest.raises(ValueError, match="plain SQL Server identifier"):
        SqlServerOptions(schema=schema)


@pytest.mark.parametrize("prefix", ["a-b", "x]", "a b", "p'", "a" * 41])
def test_unsafe_table_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="table_prefix"):
        SqlServerOptions(table_prefix=prefix)


def test_config_table_errors_name_the_option() -> None:
    with pytest.raises(msgspec.ValidationError, match="schema"):
        msgspec.convert({"schema": "no good"}, SqlServerOptions)
    with pytest.raises(msgspec.ValidationError, match="pool_siz"):
        msgspec.convert({"pool_siz": 3}, SqlServerOptions)
    with pytest.raises(msgspec.ValidationError, match="encrypt"):
        msgspec.convert({"encrypt": "maybe"}, SqlServerOptions)


def test_names_are_bracket_quoted_and_prefixed() -> None:
    names = Names("Jobs_2", "app1_")
    assert names.jobs == "[Jobs_2].[app1_jobs]"
    assert names.migrations == "[Jobs_2].[app1_schema_migrations]"
    assert names.obj("PK") == "[PK_app1_jobs]"
    assert names.obj("IX", "claim") == "[IX_app1_jobs_claim]"


def test_connection_string_from_parts_for_microsoft_driver() -> None:
    options = SqlServerOptions(
        server="db.internal",
        port=14330,
        database="app",
        user="worker",
        password="p;w}d",
        encrypt="yes",
        trust_server_certificate=True,
    )
    text = options.odbc_connection_string()
    params = parse_connection_string(text)
    assert params["driver"] == "ODBC Driver 18 for SQL Server"
    assert params["server"] == "db.internal,14330"
    assert params["pwd"] == "p;w}d"  # braced and } doubled, so ; cannot end it early
    assert params["encrypt"] == "yes"
    assert params["trustservercertificate"] == "yes"
    assert params["app"] == "oddjob"


def test_connection_string_from_parts_for_freetds_uses_port_and_tds_version() -> None:
    text = SqlServerOptions(driver="FreeTDS", server="10.0.0.5", port=1433).odbc_connection_string()
    params = parse_connection_string(text)
    assert params["server"] == "10.0.0.5"
    assert params["port"] == "1433"
    assert params["tds_version"] == "7.4"


def test_describe_names_server_database_user_but_never_the_password() -> None:
    text = "Driver={ODBC Driver 18 for SQL Server};Server=tcp:sql1,1433;Database=jobs;Uid=app;Pwd={s3cr;et};"
    described = describe(text)
    assert described == "SQL Server tcp:sql1,1433, database jobs, user app"
    assert "s3cr" not in described
    freetds = describe("DRIVER=FreeTDS;SERVER=10.1.1.1;PORT=1444;DATABASE=d;UID=u;PWD=x")
    assert freetds == "SQL Server 10.1.1.1,1444, database d, user u"
    assert "integrated" in describe("Server=s;Trusted_Connection=yes")


def test_scrub_removes_passwords_from_driver_messages() -> None:
    cs = "SERVER=s;UID=u;PWD=hunter2;"
    assert scrub("login failed for u with hunter2", cs) == "login failed for u with ***"
    assert "hunter2" not in scrub("bad string SERVER=s;PWD=hunter2;APP=x")
    assert "pa;ss" not in scrub("echo: Password={pa;ss};Server=x")


def test_times_go_in_as_naive_utc_and_naive_input_is_refused() -> None:
    cet = timezone(timedelta(hours=1))
    assert to_db(datetime(2026, 1, 1, 12, 0, tzinfo=cet)) == datetime(2026, 1, 1, 11, 0)
    with pytest.raises(ValueError, match="naive datetime"):
        to_db(datetime(2026, 1, 1, 12, 0))


def test_insert_document_carries_utc_times_and_the_whole_envelope() -> None:
    env = make_envelope("q", arguments={"a": 1}, priority=4)
    [item] = msgspec.json.decode(insert_document([env]))
    assert item["r"] == to_db(env.run_at).isoformat(timespec="microseconds")
    assert "+" not in item["r"]
    assert not item["r"].endswith("Z")
    assert item["e"]["id"] == str(env.id)
    assert item["e"]["priority"] == 4


def test_over_long_queue_or_target_is_an_enqueue_error() -> None:
    with pytest.raises(EnqueueError, match="at most 400"):
        insert_document([make_envelope("q", target="m:" + "x" * 500)])
    env = make_envelope("q")
    with pytest.raises(EnqueueError, match="at most 100"):
        insert_document([msgspec.structs.replace(env, queue="q" * 101)])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (0, None)),
        ("Bob", (1, "Bob")),
        (2, (2, "2")),
        (1.5, (2, "1.5")),
        (True, (3, "true")),
        ([1, "a"], (4, '[1,"a"]')),
        ({"k": 1}, (5, '{"k":1}')),
        (uuid.UUID(int=1), (1, "00000000-0000-0000-0000-000000000001")),
        (datetime(2026, 1, 2, tzinfo=UTC), (1, "2026-01-02T00:00:00Z")),
    ],
)
def test_argument_filters_match_openjson_types(value: object, expected: tuple[int, str]) -> None:
    assert argument_filter(value) == expected
