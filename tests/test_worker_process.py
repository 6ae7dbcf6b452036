"""A real ``oddjob worker`` process: SIGTERM drains running jobs and gives the rest back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import oddjob_filesystem  # noqa: F401  # the workers' store; nox installs every plugin

from oddjob_core import Oddjob, call
from oddjob_core.model import JobState
from oddjob_core.testing import targets, wait_for


def test_sigterm_finishes_running_jobs_and_releases_unstarted_ones(tmp_path: Path) -> None:
    store, marks = tmp_path / "store", tmp_path / "marks"
    marks.mkdir()
    settings = {
        "storage": "filesystem",
        "filesystem": {"path": str(store)},
        "allowed_prefixes": ["oddjob_core.testing.targets"],
    }
    with Oddjob(**settings) as app:
        ids = app.enqueue_many(
            [call(targets.mark_file, str(marks), f"job{i}", 1.5) for i in range(6)]
        )
    env = {
        **os.environ,
        "ODDJOB_STORAGE": "filesystem",
        "ODDJOB_FILESYSTEM__PATH": str(store),
        "ODDJOB_ALLOWED_PREFIXES": json.dumps(["oddjob_core.testing.targets"]),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "oddjob_core", "worker", "--workers", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for(lambda: len(list(marks.glob("*.start"))) >= 2, 30, 0.05), "no job started"
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, output
    assert "received SIGTERM" in output
    started = {p.stem for p in marks.glob("*.start")}
    ended = {p.stem for p in marks.glob("*.end")}
    assert started == ended, "a running job was cut off"
    with Oddjob(**settings) as app:
        records = [app.get(i) for i in ids]
    succeeded = [r for r in records if r.state is JobState.SUCCEEDED]
    ready = [r for r in records if r.state is JobState.READY]
    assert len(succeeded) == len(started)
    assert len(succeeded) + len(ready) == 6
    assert all(r.envelope.attempts == 0 for r in ready)
