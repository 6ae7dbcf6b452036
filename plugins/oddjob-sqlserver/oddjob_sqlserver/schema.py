"""Applying migrations on a live connection (the DDL itself is in ``migrations``)."""

from __future__ import annotations

from typing import Any

import pyodbc  # type: ignore[import-not-found,unused-ignore]  # its .pyi is not PEP 561 packaged

from oddjob_core.errors import StorageError

from .checks import check_compatibility, check_not_newer
from .migrations import LATEST, MIGRATIONS, Migration
from .names import Names
from .statements import Statements


def first_value(cursor: pyodbc.Cursor) -> Any:
    """The first column of the first row of the first result set that has columns.

    A batch like ``DECLARE ...; EXEC ...; SELECT ...`` may yield row-count
    results before the one with rows; skip them.
    """
    while cursor.description is None:
        if not cursor.nextset():
            return None
    row = cursor.fetchone()
    return row[0] if row else None


def check_database(cursor: pyodbc.Cursor, names: Names, target: str) -> None:
    """Refuse a database below compatibility level 130 (OPENJSON) before anything else fails."""
    row = cursor.execute(Statements(names).compatibility_level).fetchone()
    if row is not None:
        check_compatibility(row[1], str(row[0]), target)


def applied_version(cursor: pyodbc.Cursor, names: Names) -> int:
    """The highest applied migration (0 when the migrations table does not exist)."""
    st = Statements(names)
    if not first_value(cursor.execute(st.migrations_table_exists)):
        return 0
    versions = [int(r[0]) for r in cursor.execute(st.applied_versions).fetchall()]
    return max(versions, default=0)


def migrate(
    cursor: pyodbc.Cursor, names: Names, lock_timeout_ms: int = 60_000, target: str = "SQL Server"
) -> list[Migration]:
    """Apply pending migrations inside the caller's transaction; return those applied.

    The exclusive application lock (owned by the transaction) makes workers
    that start together wait for each other; the later ones then find
    nothing left to do. The caller commits. The statements run on a cursor
    without the query timeout: an index build on a big table may take minutes.
    """
    connection = cursor.connection
    saved = connection.timeout
    connection.timeout = 0  # applies to cursors made from now on
    try:
        unlimited = connection.cursor()
    finally:
        connection.timeout = saved
    try:
        return _migrate(unlimited, names, lock_timeout_ms, target)
    finally:
        unlimited.close()


def _migrate(
    cursor: pyodbc.Cursor, names: Names, lock_timeout_ms: int, target: str
) -> list[Migration]:
    check_database(cursor, names, target)
    st = Statements(names)
    result = first_value(cursor.execute(st.applock(lock_timeout_ms)))
    if result is None or int(result) < 0:
        raise StorageError(
            f"could not take the migration lock of {names.label()} within "
            f"{lock_timeout_ms / 1000:g} s (sp_getapplock returned {result}); another process "
            "may be migrating it: retry in a minute"
        )
    for statement in st.bookkeeping:
        cursor.execute(statement)
    done = {int(r[0]) for r in cursor.execute(st.applied_versions).fetchall()}
    check_not_newer(max(done, default=0), names.label(), target)
    applied: list[Migration] = []
    for m in MIGRATIONS:
        if m.version in done:
            continue
        for statement in m.statements(names):
            cursor.execute(statement)
        cursor.execute(st.record_migration, m.version, m.name)
        applied.append(m)
    return applied


__all__ = ["LATEST", "applied_version", "check_database", "first_value", "migrate"]
