"""How the one JSON document parameter of a batch statement is declared to the server.

pyodbc declares a str parameter as ``nvarchar(2 × its length)``, so every
batch size compiles and caches its own plan. Microsoft's drivers honour an
explicit ``nvarchar(max)`` declaration (``setinputsizes`` with size 0): one
plan for every size. FreeTDS does not (it fails on strings over 2,000
characters declared that way), so it keeps pyodbc's default; the statements
``CONVERT(nvarchar(max), ?)`` either way.
"""

from __future__ import annotations

import pyodbc  # type: ignore[import-not-found,unused-ignore]


def declares_nvarchar_max(driver_name: str) -> bool:
    """True for Microsoft's ODBC drivers (``libmsodbcsql-18.x.so``, ``msodbcsql18.dll``)."""
    return "msodbcsql" in driver_name.lower() or "sqlncli" in driver_name.lower()


def declare_document_parameter(cursor: pyodbc.Cursor) -> None:
    """Before executing a statement whose only parameter is a JSON document: nvarchar(max)."""
    try:
        driver = str(cursor.connection.getinfo(pyodbc.SQL_DRIVER_NAME))
    except pyodbc.Error:
        return
    if declares_nvarchar_max(driver):
        cursor.setinputsizes([(pyodbc.SQL_WVARCHAR, 0, 0)])
