"""The ``[prometheus]`` table (``[tool.oddjob.prometheus]`` in pyproject.toml)."""

from __future__ import annotations

import msgspec


class PrometheusOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a worker serves ``/metrics``; no port means it serves nothing (metrics still count)."""

    port: int | None = None  # e.g. 9464; one port per worker process (or use multiprocess mode)
    addr: str = "127.0.0.1"  # "0.0.0.0" lets a Prometheus on another host scrape it
    depth_cache_seconds: float = 5.0  # queue depth costs one counts() call per this many seconds

    def __post_init__(self) -> None:
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if self.depth_cache_seconds < 0:
            raise ValueError(f"depth_cache_seconds must be >= 0, got {self.depth_cache_seconds}")
