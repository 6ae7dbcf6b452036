"""Safe by default: loopback unless credentials are set, HTTP Basic / bearer auth, CSRF tokens.

CSRF: each browser gets a random ``oddjob_csrf`` cookie (SameSite=Strict,
HttpOnly); every form carries ``HMAC(secret, cookie)``; a POST whose form
token does not match its cookie, or whose ``Origin`` names another host, is
refused with 403. A cross-site page can neither read the cookie nor the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

CSRF_COOKIE = "oddjob_csrf"
CSRF_FIELD = "csrf"
_COOKIE = re.compile(r"[A-Za-z0-9_\-]{16,128}")


class BindRefused(Exception):
    """A non-loopback bind was asked for without credentials."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: addresses only this machine can reach."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True)
class Credentials:
    """Who may use the dashboard: a token, or a user name and password (or both)."""

    token: str | None = None
    username: str | None = None
    password: str | None = None

    def __bool__(self) -> bool:
        return bool(self.token) or bool(self.username and self.password)

    def accepts(self, authorization: str | None) -> bool:
        """True if the ``Authorization`` header carries these credentials."""
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return bool(self.token) and _same(value, self.token or "")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        if self.token and _same(password, self.token):
            return True
        return bool(
            self.username
            and self.password
            and _same(user, self.username) & _same(password, self.password)
        )


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def check_bind(host: str, credentials: Credentials) -> None:
    """Raise ``BindRefused`` (with the fix) for a non-loopback host without credentials."""
    if is_loopback(host) or credentials:
        return
    raise BindRefused(
        f"refusing to serve the dashboard on {host}: anyone who can reach that address could "
        "requeue, cancel and read jobs. Set credentials first: a token "
        "(ODDJOB_DASHBOARD__TOKEN or `token` in the [dashboard] table of oddjob.toml), or "
        "`username` and `password` there (ODDJOB_DASHBOARD__USERNAME / __PASSWORD); "
        "or bind to 127.0.0.1 and use an SSH tunnel"
    )


class AuthMiddleware:
    """Every request must carry the credentials (HTTP Basic, or a bearer token)."""

    def __init__(self, app: ASGIApp, credentials: Credentials) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw = headers.get(b"authorization")
        if not self.credentials.accepts(raw.decode("latin-1") if raw else None):
            response = PlainTextResponse(
                "authentication required",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="oddjob dashboard", charset="UTF-8"'},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class Csrf:
    """Issues and checks CSRF tokens bound to a per-browser cookie."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or secrets.token_bytes(32)

    def cookie_of(self, request: Request) -> str:
        """The browser's CSRF cookie, or a new one (``remember`` sets it on the response)."""
        existing = request.cookies.get(CSRF_COOKIE)
        if existing and _COOKIE.fullmatch(existing):
            return existing
        fresh: str = request.state.__dict__.setdefault("new_csrf_cookie", secrets.token_urlsafe(32))
        return fresh

    def token_for(self, request: Request) -> str:
        cookie = self.cookie_of(request)
        return hmac.new(self.secret, cookie.encode("ascii"), hashlib.sha256).hexdigest()

    def remember(self, request: Request, response: Response) -> Response:
        """Set the cookie if this request made a new one."""
        fresh = request.state.__dict__.get("new_csrf_cookie")
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                fresh,
                httponly=True,
                samesite="strict",
                path=(request.scope.get("root_path") or "") + "/",
            )
        return response

    def valid(self, request: Request, submitted: str | None) -> bool:
        """The POST's token matches its cookie and its Origin (if any) is this host."""
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not submitted or not _COOKIE.fullmatch(cookie):
            return False
        origin = request.headers.get("origin")
        if origin and origin != "null":
            host = request.headers.get("host", "")
            if origin.split("://", 1)[-1].rstrip("/") != host:
                return False
        expected = hmac.new(self.secret, cookie.encode("ascii"), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, submitted)
