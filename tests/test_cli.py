"""The ``oddjob`` CLI end to end against one shared store (and as a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence

import pytest
from click.testing import CliRunner, Result

from oddjob_core import hookimpl
from oddjob_core.backends import StorageBackend
from oddjob_core.cli import build_cli
from oddjob_core.memory import MemoryStorage
from oddjob_core.plugins import PluginRegistry

TARGETS = "oddjob_core.testing.targets"


class SharedMemoryPlugin:
    """A storage backend whose every instance is one store, so CLI calls see each other's jobs."""

    def __init__(self) -> None:
        self.store = MemoryStorage()

    @hookimpl
    def oddjob_storage_backends(self) -> Sequence[StorageBackend]:
        return [StorageBackend("shared", lambda options: self.store, "one store for the test")]


@pytest.fixture
def oddjob(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ODDJOB_STORAGE", "shared")
    monkeypatch.setenv("ODDJOB_ALLOWED_PREFIXES", json.dumps([TARGETS]))
    monkeypatch.setenv("ODDJOB_POLL_INTERVAL", "0.05")
    registry = PluginRegistry(extra=[("shared", SharedMemoryPlugin())])

    def run(*args: str, ok: bool = True) -> Result:
        result = CliRunner().invoke(build_cli(registry), list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


def test_enqueue_run_and_inspect(oddjob) -> None:  # type: ignore[no-untyped-def]
    ok_id = oddjob("enqueue", f"{TARGETS}:echo", "--args", '["cli", 5]').output.strip()
    bad = json.loads(
        oddjob(
            "enqueue",
            f"{TARGETS}:fail_times",
            "--kwargs",
            '{"key": "cli", "failures": 9}',
            "--retries",
            "1",
            "--json",
        ).output
    )
    later = oddjob("enqueue", f"{TARGETS}:noop", "--delay", "3d", "--queue", "default").output
    listed = json.loads(oddjob("jobs", "list", "--json").output)
    assert listed["total"] == 3
    assert {j["state"] for j in listed["jobs"]} == {"ready", "scheduled"}

    worker = oddjob("worker", "--burst", "--burst-wait", "5", "--workers", "2", "-v")
    assert "ok    oddjob_core.testing.targets:echo" in worker.output
    assert "FAIL  oddjob_core.testing.targets:fail_times" in worker.output

    shown = json.loads(oddjob("jobs", "show", ok_id, "--json").output)
    assert (shown["state"], shown["result"]) == ("succeeded", 5)
    text = oddjob("jobs", "show", bad["envelope"]["id"]).output
    assert "state: failed" in text
    assert "RuntimeError: planned failure 2 of 9" in text
    assert "Traceback" in text

    queues = json.loads(oddjob("queues", "--json").output)
    assert queues["default"] == {"succeeded": 1, "failed": 1, "scheduled": 1}
    failed = json.loads(oddjob("jobs", "list", "--state", "failed", "--json").output)
    assert [j["envelope"]["id"] for j in failed["jobs"]] == [bad["envelope"]["id"]]

    assert "requeued" in oddjob("jobs", "retry", bad["envelope"]["id"]).output
    assert "cancelled" in oddjob("jobs", "cancel", later.strip()).output
    cancel_again = oddjob("jobs", "cancel", later.strip(), ok=False)
    assert cancel_again.exit_code == 1
    assert "only waiting jobs can be cancelled" in cancel_again.output
    purged = json.loads(
        oddjob("jobs", "purge", "--state", "succeeded", "--state", "cancelled", "--json").output
    )
    assert purged == {"purged": 2}


def test_jobs_delete_removes_a_waiting_job_and_says_when_it_cannot(oddjob) -> None:  # type: ignore[no-untyped-def]
    later = oddjob("enqueue", f"{TARGETS}:noop", "--delay", "3d").output.strip()
    assert f"deleted {later}" in oddjob("jobs", "delete", later).output
    assert json.loads(oddjob("jobs", "list", "--json").output)["total"] == 0
    again = oddjob("jobs", "delete", later, ok=False)
    assert again.exit_code == 1
    assert "delete it once it finished" in again.output


def test_bad_json_arguments_are_reported(oddjob) -> None:  # type: ignore[no-untyped-def]
    result = oddjob("enqueue", f"{TARGETS}:echo", "--args", "[1,", ok=False)
    assert result.exit_code == 2
    assert "--args is not valid JSON" in result.output


def test_bad_duration_is_reported(oddjob) -> None:  # type: ignore[no-untyped-def]
    result = oddjob("enqueue", f"{TARGETS}:noop", "--delay", "soon", ok=False)
    assert result.exit_code == 2
    assert "'soon' is not a duration" in result.output


def test_user_errors_print_one_line_without_a_traceback(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-m", "oddjob_core", "--storage", "nosuchstore", "queues"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: storage backend 'nosuchstore' is not installed")
    assert "Traceback" not in proc.stderr


def test_unknown_job_id_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-m", "oddjob_core", "--storage", "memory", "jobs", "show", "not-a-uuid"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "'not-a-uuid' is not a job id" in proc.stderr
    assert "Traceback" not in proc.stderr
