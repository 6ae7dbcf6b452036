"""The ``[dashboard]`` table of the oddjob configuration (``ODDJOB_DASHBOARD__TOKEN``...)."""

from __future__ import annotations

import msgspec


class DashboardOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where the dashboard listens and who may use it.

    ``token`` or ``username`` + ``password`` switch on authentication (HTTP
    Basic; with a token, any user name and the token as password, or an
    ``Authorization: Bearer`` header). They are required to bind anywhere but
    loopback. ``refresh`` is the live-refresh period of the pages in seconds
    (0: off).
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    username: str | None = None
    password: str | None = None
    read_only: bool = False
    refresh: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password, or neither")
        if self.refresh < 0:
            raise ValueError(f"refresh must be >= 0, got {self.refresh}")
