"""The seams observability plugins build on: job headers, the lost-outcome hook, JSON logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from oddjob_core import Oddjob, hookimpl
from oddjob_core.engine.runner import JobRunner
from oddjob_core.errors import LeaseLost, StorageError
from oddjob_core.memory import plugin as memory_plugin
from oddjob_core.model import Claim, Envelope
from oddjob_core.plugins import PluginRegistry
from oddjob_core.testing import targets
from oddjob_core.testing.envelopes import make_envelope


class Tagger:
    """Two header plugins, one of which raises: the other's headers are still stored."""

    @hookimpl
    def oddjob_job_headers(self, job: Envelope) -> dict[str, str] | None:
        return {"tenant": "acme", "queue-seen": job.queue}


class Broken:
    @hookimpl
    def oddjob_job_headers(self, job: Envelope) -> dict[str, str] | None:
        raise RuntimeError("tracing backend down")


class LostRecorder:
    def __init__(self) -> None:
        self.lost: list[tuple[Claim, StorageError]] = []

    @hookimpl
    def oddjob_job_lost(self, claim: Claim, error: StorageError) -> None:
        self.lost.append((claim, error))


def registry_with(*plugins: object) -> PluginRegistry:
    """The memory store and ``plugins`` only: installed plugins (oddjob-otel) would add headers."""
    extra = [("memory", memory_plugin), *((type(p).__name__.lower(), p) for p in plugins)]
    return PluginRegistry(entry_points=False, extra=extra)


def test_headers_from_every_plugin_are_stored_and_a_raising_one_is_skipped() -> None:
    with Oddjob(storage="memory", registry=registry_with(Tagger(), Broken())) as app:
        job_id = app.options(queue="mail").enqueue(targets.noop, 1)
        assert app.get(job_id).envelope.headers == {"tenant": "acme", "queue-seen": "mail"}


def test_without_header_plugins_a_job_stores_no_headers_key() -> None:
    with Oddjob(storage="memory", registry=registry_with()) as app:
        envelope = app.get(app.enqueue(targets.noop, 1)).envelope
    assert envelope.headers == {}
    assert b"headers" not in msgspec.json.encode(envelope)


def test_a_job_stored_before_headers_existed_still_decodes() -> None:
    stored = msgspec.json.encode(make_envelope())
    old = msgspec.json.decode(stored)
    old.pop("headers", None)
    assert msgspec.json.decode(msgspec.json.encode(old), type=Envelope).headers == {}


def test_an_outcome_that_cannot_be_recorded_reaches_the_lost_hook() -> None:
    recorder = LostRecorder()
    registry = registry_with(recorder)
    with Oddjob(storage="memory", registry=registry) as app:
        app.enqueue(targets.noop, 1)
        storage = app.storage
        runner = JobRunner(storage, registry.hooks, app.targets)
        (stale,) = storage.claim("default", 1, 0.05, "worker-a")
        time.sleep(0.1)
        (fresh,) = storage.claim("default", 1, 30, "worker-b")  # the lease passed to worker-b
        runner.run(stale)
    assert fresh.job.id == stale.job.id
    assert [(c.job.id, type(e)) for c, e in recorder.lost] == [(stale.job.id, LeaseLost)]


def _write_app(folder: Path) -> None:
    (folder / "logapp").mkdir()
    (folder / "logapp" / "__init__.py").write_text("")
    (folder / "logapp" / "jobs.py").write_text(
        textwrap.dedent(
            """
            import logging
            from oddjob_core import job

            @job
            def chatty(n: int) -> int:
                logging.getLogger("logapp").warning("working on %d", n)
                if n == 2:
                    raise ValueError("two is not allowed")
                return n
            """
        )
    )


def _worker_log_lines(folder: Path, *args: str, config: str = "") -> list[str]:
    (folder / "oddjob.toml").write_text(
        config + 'imports = ["logapp.jobs"]\n[filesystem]\npath = "store"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(folder)}
    for n in (1, 2):
        enqueue = [sys.executable, "-m", "oddjob_core", "enqueue", "logapp.jobs:chatty"]
        subprocess.run([*enqueue, "--args", f"[{n}]"], cwd=folder, env=env, check=True, timeout=60)
    # --burst-wait 0: stop before the failed job's retry (due in ~1 s) runs, so it logs once
    worker = [sys.executable, "-m", "oddjob_core", "worker", "--burst", "--burst-wait", "0", *args]
    done = subprocess.run(worker, cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]


def _parsed(lines: Sequence[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]  # raises on any line that is not JSON


def test_json_logs_are_one_object_per_line_with_the_job_they_concern(tmp_path: Path) -> None:
    _write_app(tmp_path)
    records = _parsed(_worker_log_lines(tmp_path, "--log-format", "json", "-v"))
    assert records, "the worker logged nothing"
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    from_job = [r for r in records if r["logger"] == "logapp"]
    assert sorted(r["message"] for r in from_job) == ["working on 1", "working on 2"]
    assert all(r["target"] == "logapp.jobs:chatty" and r["attempt"] == 1 for r in from_job)
    assert all(r["queue"] == "default" and len(r["job_id"]) == 36 for r in from_job)
    retry = [r for r in records if r["message"].startswith("retry")]
    assert len(retry) == 1
    assert retry[0]["job_id"] in {r["job_id"] for r in from_job}


def test_log_format_can_come_from_the_config_file(tmp_path: Path) -> None:
    _write_app(tmp_path)
    records = _parsed(_worker_log_lines(tmp_path, config='log_format = "json"\n'))
    assert any(r["message"].startswith("[oddjob]") for r in records)


def test_text_logs_stay_the_default(tmp_path: Path) -> None:
    _write_app(tmp_path)
    lines = _worker_log_lines(tmp_path)
    assert any("working on 1" in line for line in lines)
    assert not any(line.startswith("{") for line in lines)
