"""What ``oddjob doctor`` needs from SQL Server: drop its private tables, show the server's settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oddjob_core.doctor import DoctorSupport

from .names import Names

if TYPE_CHECKING:
    import pyodbc  # type: ignore[import-not-found,unused-ignore]

    from .database import Database

#: parameters: schema, prefix (every table of the schema whose name starts with the prefix)
DROP_NAMESPACE = """
DECLARE @schema sysname = ?, @prefix sysname = ?;
DECLARE @sql nvarchar(max) = N'';
SELECT @sql = @sql + N'DROP TABLE ' + QUOTENAME(s.name) + N'.' + QUOTENAME(t.name) + N'; '
FROM sys.tables AS t JOIN sys.schemas AS s ON s.schema_id = t.schema_id
WHERE s.name = @schema AND LEFT(t.name, LEN(@prefix)) = @prefix;
EXEC sp_executesql @sql;
IF @schema <> N'dbo' AND NOT EXISTS (SELECT 1 FROM sys.objects WHERE schema_id = SCHEMA_ID(@schema))
BEGIN
    SET @sql = N'DROP SCHEMA ' + QUOTENAME(@schema);
    EXEC sp_executesql @sql;
END
""".strip()

#: the server's and database's settings that matter to oddjob-sqlserver
SERVER_SETTINGS = """
SELECT CONVERT(nvarchar(128), SERVERPROPERTY('ProductVersion')) AS version,
       CONVERT(nvarchar(128), SERVERPROPERTY('Edition')) AS edition,
       d.compatibility_level,
       d.is_read_committed_snapshot_on,
       d.snapshot_isolation_state_desc,
       (SELECT transaction_isolation_level FROM sys.dm_exec_sessions
        WHERE session_id = @@SPID) AS session_isolation
FROM sys.databases AS d
WHERE d.database_id = DB_ID()
""".strip()

_ISOLATION = {
    1: "read uncommitted",
    2: "read committed",
    3: "repeatable read",
    4: "serializable",
    5: "snapshot",
}


class SqlServerDoctor(DoctorSupport):
    """Mixed into ``SqlServerStorage``."""

    names: Names
    database: Database

    def drop_namespace(self) -> None:
        schema, prefix = self.names.schema, self.names.prefix

        def drop(cur: pyodbc.Cursor, retried: bool) -> None:
            cur.execute(DROP_NAMESPACE, schema, prefix)

        self.database.run(f"dropping {self.names.label()}", drop)

    def server_settings(self) -> dict[str, str]:
        def read(cur: pyodbc.Cursor, retried: bool) -> Any:
            return cur.execute(SERVER_SETTINGS).fetchone()

        row = self.database.run("reading the server's settings", read)
        if row is None:
            return {}
        version, edition, level, rcsi, snapshot, isolation = row
        return {
            "version": str(version),
            "edition": str(edition),
            "compatibility_level": str(level),
            "read_committed_snapshot": "on" if rcsi else "off (reads may wait on locks)",
            "snapshot_isolation": str(snapshot),
            "session_isolation": _ISOLATION.get(int(isolation or 0), str(isolation)),
        }
