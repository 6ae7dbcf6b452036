"""What a run ran on: the machine, its load, Python, library and server versions, server settings.

Recorded in every result JSON and printed with the report, so a figure can be
traced to the conditions that produced it (a shared 2-core VM under load is not
a quiet 32-core server, and ``autovacuum = off`` changes PostgreSQL's numbers).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

PG_SETTINGS = (
    "autovacuum", "synchronous_commit", "fsync", "full_page_writes", "wal_level",
    "shared_buffers", "max_connections", "checkpoint_timeout", "work_mem",
)  # fmt: skip
PACKAGES = (
    "oddjob-core", "msgspec", "pluggy", "psycopg", "aio-pika", "aiormq", "dramatiq", "celery",
    "huey", "procrastinate", "pgqueuer", "asyncpg", "prometheus-client", "opentelemetry-sdk",
)  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def postgres() -> dict[str, Any] | None:
    """Server version and the settings that move job-queue numbers; None if unreachable."""
    try:
        import psycopg

        from .services import PG_DSN

        with psycopg.connect(PG_DSN, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            settings = {
                name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                for name in PG_SETTINGS
            }
        return {"version": version[0] if version else "?", "settings": settings}
    except Exception:
        return None


def rabbitmq() -> dict[str, Any] | None:
    """Broker and Erlang versions from rabbitmqctl; None if it does not answer."""
    try:
        version = subprocess.run(
            ["rabbitmqctl", "-q", "version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        erlang = subprocess.run(
            ["rabbitmqctl", "-q", "eval", "erlang:system_info(otp_release)."],
            capture_output=True, text=True, timeout=30,
        ).stdout.strip().strip('"')  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"version": version or "?", "erlang": erlang or "?"} if version else None


def collect() -> dict[str, Any]:
    """Everything above, read now."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
        "oddjob_commit": _commit(),
        "packages": packages,
        "postgres": postgres(),
        "rabbitmq": rabbitmq(),
    }


def describe(env: dict[str, Any], load_after: list[float] | None = None) -> str:
    """The environment as a few readable lines for the report."""
    pg, mq = env.get("postgres"), env.get("rabbitmq")
    load = "/".join(f"{x:.1f}" for x in env["load_average"])
    lines = [
        f"machine: {env['host']}, {env['cpus']} CPUs ({env['cpu']}), {env['platform']}",
        f"load average (1/5/15 min) at start {load}"
        + (f", at end {'/'.join(f'{x:.1f}' for x in load_after)}" if load_after else ""),
        f"Python {env['python']}, oddjob at {env['oddjob_commit']}; "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
    ]
    if pg:
        settings = ", ".join(f"{k}={v}" for k, v in pg["settings"].items())
        lines.append(f"PostgreSQL version {pg['version']} ({settings})")
    else:
        lines.append("PostgreSQL: not reachable")
    lines.append(
        f"RabbitMQ {mq['version']} (Erlang/OTP {mq['erlang']})" if mq else "RabbitMQ: not reachable"
    )
    return "\n".join(lines)
