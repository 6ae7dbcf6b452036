"""Broker URLs for messages and logs: never with the password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact(url: str) -> str:
    """``url`` without its password (``amqp://user@host:5672/vhost``); the user name stays."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{parts.port}" if parts.port else "")
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<unparsable AMQP URL>"


def scrub(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (and the full URL) replaced, for driver errors."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    text = text.replace(url, redact(url))
    if password:
        text = text.replace(password, "***")
    return text
