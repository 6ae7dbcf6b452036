"""Show where the jobs live without showing a password: options and connection strings redacted."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRET_KEY = re.compile(r"pass|pwd|secret|token|credential|key", re.IGNORECASE)
# libpq "password=x" / ODBC "PWD=x;" style key=value pairs inside a connection string
_PAIR = re.compile(r"(?i)\b(password|pwd|passwd)\s*=\s*('(?:[^'\\]|\\.)*'|\{[^}]*\}|[^\s;]*)")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s]+")

HIDDEN = "***"


def redact_text(text: str) -> str:
    """``text`` with URL passwords and ``password=`` / ``PWD=`` values replaced by ``***``."""
    text = _URL.sub(lambda m: _redact_url(m.group(0)), text)
    return _PAIR.sub(lambda m: f"{m.group(1)}={HIDDEN}", text)


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(
            (parts.scheme, f"{user}:{HIDDEN}@{netloc}", parts.path, parts.query, parts.fragment)
        )
    except ValueError:
        return "<unparsable URL>"


def redact_options(options: Any) -> Any:
    """A copy of a backend's option table: secret-named keys hidden, connection strings redacted."""
    if isinstance(options, dict):
        return {
            str(key): HIDDEN
            if _SECRET_KEY.search(str(key)) and value not in (None, "")
            else redact_options(value)
            for key, value in options.items()
        }
    if isinstance(options, list | tuple):
        return [redact_options(v) for v in options]
    if isinstance(options, str):
        return redact_text(options)
    return options
