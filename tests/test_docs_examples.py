"""The README's first example and docs/first-hour.md run as written (#19).

Code blocks whose first line is ``# file: PATH`` (or ``# PATH`` for the README)
are written to that path; ``$ `` lines of console blocks run in one bash
script, in page order, with the installed ``oddjob`` on PATH. ``pip install``
lines are what this test's environment already did.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
FILE = re.compile(r"#\s*(?:file:\s*)?([\w./-]+\.(?:py|toml))\s*$")


def steps(page: str) -> list[tuple[str, str]]:
    """("file", "path\\ncontent") and ("run", "command") in page order."""
    out: list[tuple[str, str]] = []
    for lang, body in BLOCK.findall(page):
        first, _, rest = body.partition("\n")
        named = FILE.match(first)
        if lang in ("python", "toml") and named:
            out.append(("file", f"{named.group(1)}\n{rest}"))
        elif lang == "console":
            for line in body.splitlines():
                if line.startswith("$ ") and not line.startswith("$ pip install"):
                    out.append(("run", line[2:]))
    return out


def script(page: str, schema: str) -> str:
    lines = ["set -euo pipefail"]
    for kind, text in steps(page):
        text = text.replace('schema = "first_hour"', f'schema = "{schema}"')
        if kind == "file":
            path, _, content = text.partition("\n")
            lines += [f"mkdir -p $(dirname {path})", f"cat > {path} <<'ODDJOB_EOF'"]
            lines += [content.rstrip("\n"), "ODDJOB_EOF"]
        else:
            lines += [f"echo '>>> {text.replace(chr(39), '')}'", text]
    return "\n".join(lines) + "\n"


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("ODDJOB_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def postgres_or_skip() -> str:
    psycopg = pytest.importorskip("psycopg")
    dsn = "postgresql://postgres@127.0.0.1:5432/test"
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        from oddjob_core.testing import service_unavailable

        service_unavailable(f"PostgreSQL is not reachable at {dsn}: {exc}")
    return dsn


def test_first_hour_walkthrough_runs_as_written(tmp_path: Path) -> None:
    dsn = postgres_or_skip()
    schema = f"first_hour_{secrets.token_hex(4)}"
    page = (ROOT / "docs" / "first-hour.md").read_text()
    try:
        done = subprocess.run(
            ["bash", "-c", script(page, schema)],
            cwd=tmp_path,
            env=user_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "would not be run by a worker" in out  # os:system was refused
    assert "ok    myapp.jobs:hello" in out
    assert "FAIL  myapp.jobs:publish" in out
    assert "ok    myapp.jobs:publish" in out  # after the fix and `jobs retry`
    assert out.count("state: succeeded") >= 1
    assert f"schema '{schema}'" in out


def test_readme_first_example_runs_as_written(tmp_path: Path) -> None:
    page = (ROOT / "README.md").read_text()
    first = page[: page.index("## Quick start")]
    files = [text for kind, text in steps(first) if kind == "file"]
    commands = [text for kind, text in steps(first) if kind == "run"]
    assert [f.partition("\n")[0] for f in files] == ["myapp/jobs.py", "oddjob.toml", "enqueue.py"]
    for text in files:
        path, _, content = text.partition("\n")
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    (tmp_path / "myapp" / "__init__.py").write_text("")
    env = user_env()
    enqueued = subprocess.run(
        [sys.executable, "enqueue.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert enqueued.returncode == 0, enqueued.stderr
    assert "Warning" not in enqueued.stderr
    assert commands == ["oddjob worker --queue default --workers 8"]
    worker = subprocess.Popen(
        ["bash", "-c", f"exec {commands[0]} -v"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        seen = ""
        assert worker.stderr is not None
        while "ok    myapp.jobs:send_invoice" not in seen:
            assert time.monotonic() < deadline, seen
            seen += worker.stderr.readline()
    finally:
        worker.send_signal(signal.SIGTERM)
        rest = worker.communicate(timeout=60)[1]
    assert worker.returncode == 0, seen + rest
