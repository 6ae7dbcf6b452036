"""ODBC connection strings: build them, name their target without the password, scrub messages.

A connection string is ``key=value;`` pairs; a value with ``;``, ``{`` or
``}`` (or surrounding spaces) is wrapped in braces with ``}`` doubled. Keys
are case-insensitive and several synonyms exist (``SERVER``/``Address``,
``UID``/``User ID``), so every lookup goes through ``_first``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PASSWORD_KEYS = ("pwd", "password")
_SECRET_KEYS = {"pwd", "password", "accesstoken", "clientsecret", "keystoresecret"}


def quote_value(value: str) -> str:
    """An attribute value as ODBC wants it: braced when it holds special characters."""
    if not value or re.search(r"[;{}=\[\]]|^\s|\s$", value):
        return "{" + value.replace("}", "}}") + "}"
    return value


def build_connection_string(
    *,
    driver: str,
    server: str,
    port: int | None,
    database: str,
    user: str,
    password: str,
    encrypt: str | None,
    trust_server_certificate: bool,
    application_name: str,
    extra: Mapping[str, str],
) -> str:
    """Assemble a connection string for Microsoft's ODBC drivers or FreeTDS from its parts."""
    freetds = "freetds" in driver.lower() or driver.lower().startswith("libtdsodbc")
    parts: list[tuple[str, str]] = [("DRIVER", "{" + driver.replace("}", "}}") + "}")]
    if freetds:
        parts.append(("SERVER", quote_value(server)))
        if port is not None:
            parts.append(("PORT", str(port)))
        if not any(k.lower() == "tds_version" for k in extra):
            parts.append(("TDS_Version", "7.4"))  # datetime2 needs TDS 7.3 or later
    else:
        parts.append(("SERVER", quote_value(f"{server},{port}" if port is not None else server)))
        if encrypt is not None:
            parts.append(("Encrypt", quote_value(encrypt)))
        if trust_server_certificate:
            parts.append(("TrustServerCertificate", "yes"))
    if database:
        parts.append(("DATABASE", quote_value(database)))
    if user:
        parts.append(("UID", quote_value(user)))
    if password:
        parts.append(("PWD", quote_value(password)))
    if application_name:
        parts.append(("APP", quote_value(application_name)))
    parts.extend((key, quote_value(value)) for key, value in extra.items())
    return ";".join(f"{k}={v}" for k, v in parts) + ";"


def parse_connection_string(text: str) -> dict[str, str]:
    """``{lower-case key: value}`` of an ODBC connection string (braces removed)."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in "; \t\r\n":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip().lower()
        j = eq + 1
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == "{":
            value_chars: list[str] = []
            j += 1
            while j < n:
                if text[j] == "}":
                    if j + 1 < n and text[j + 1] == "}":
                        value_chars.append("}")
                        j += 2
                        continue
                    j += 1
                    break
                value_chars.append(text[j])
                j += 1
            value = "".join(value_chars)
            end = text.find(";", j)
            i = n if end < 0 else end + 1
        else:
            end = text.find(";", j)
            value = text[j : n if end < 0 else end].strip()
            i = n if end < 0 else end + 1
        if key:
            out[key] = value
    return out


def _first(params: Mapping[str, str], *keys: str) -> str:
    for key in keys:
        if params.get(key):
            return params[key]
    return ""


def describe(connection_string: str) -> str:
    """``SQL Server host:port, database d, user u``: the target for messages, never the password."""
    params = parse_connection_string(connection_string)
    dsn = _first(params, "dsn")
    server = _first(params, "server", "address", "addr", "network address", "servername")
    port = _first(params, "port")
    if server and port and "," not in server:
        server = f"{server},{port}"
    where = server or (f"DSN {dsn}" if dsn else "(server not named in the connection string)")
    database = _first(params, "database", "initial catalog") or "(login's default database)"
    if _first(params, "trusted_connection").lower() in {"yes", "true"}:
        user = "(integrated security)"
    else:
        user = _first(params, "uid", "user id", "user") or "(no user named)"
    return f"SQL Server {where}, database {database}, user {user}"


def secrets_of(connection_string: str) -> list[str]:
    """Secret values (password, tokens) found in a connection string, longest first."""
    params = parse_connection_string(connection_string)
    found = [v for k, v in params.items() if k in _SECRET_KEYS and v]
    return sorted(set(found), key=len, reverse=True)


_SECRET_PAIR = re.compile(
    r"(?i)\b(pwd|password|accesstoken|clientsecret|keystoresecret)\s*=\s*(\{(?:[^}]|\}\})*\}|[^;]*)"
)


#: secrets shorter than this are replaced only where they stand alone (not inside a word):
#: a password "x" must not turn "exist" into "e***ist"
SHORT_SECRET = 8


def scrub(text: str, connection_string: str = "") -> str:
    """Remove passwords from a driver message: known secret values and any ``PWD=...`` pair."""
    for secret in secrets_of(connection_string):
        if len(secret) >= SHORT_SECRET:
            text = text.replace(secret, "***")
        else:
            alone = rf"(?<![A-Za-z0-9_]){re.escape(secret)}(?![A-Za-z0-9_])"
            text = re.sub(alone, "***", text)
    return _SECRET_PAIR.sub(lambda m: f"{m.group(1)}=***", text)


def driver_of(connection_string: str) -> str:
    """The ``DRIVER`` a connection string names (empty when it uses a DSN instead)."""
    return _first(parse_connection_string(connection_string), "driver")
