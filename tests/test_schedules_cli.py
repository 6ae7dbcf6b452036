"""``oddjob schedules`` driven as a user does: real subprocesses on one filesystem store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TARGET = "oddjob_core.testing.targets:noop"


def oddjob(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oddjob_core", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_list_pause_resume_and_trigger_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "oddjob.toml").write_text(
        'allowed_prefixes = ["oddjob_core.testing"]\n[filesystem]\npath = "store"\n'
        f'[schedules.nightly]\ntarget = "{TARGET}"\ncron = "0 3 * * *"\n'
        'timezone = "Europe/Berlin"\nargs = [7]\n'
    )
    listed = oddjob(tmp_path, "schedules", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [info] = json.loads(listed.stdout)
    assert (info["name"], info["cron"], info["timezone"], info["paused"]) == (
        "nightly",
        "0 3 * * *",
        "Europe/Berlin",
        False,
    )
    assert oddjob(tmp_path, "schedules", "pause", "nightly").returncode == 0
    table = oddjob(tmp_path, "schedules", "list")  # the human table shows it paused
    assert table.stdout.splitlines()[1].split()[0] == "nightly"
    assert table.stdout.splitlines()[1].split()[-1] == "yes"
    assert oddjob(tmp_path, "schedules", "resume", "nightly").returncode == 0
    triggered = oddjob(tmp_path, "schedules", "trigger", "nightly")
    assert triggered.returncode == 0, triggered.stderr
    job = oddjob(tmp_path, "jobs", "show", triggered.stdout.strip(), "--json")
    assert job.returncode == 0, job.stderr
    assert '"schedule":"nightly"' in job.stdout.replace(" ", "")


def test_a_bad_schedule_fails_the_cli_naming_it(tmp_path: Path) -> None:
    (tmp_path / "oddjob.toml").write_text(
        f'[schedules.broken]\ntarget = "{TARGET}"\ncron = "61 * * * *"\n'
    )
    result = oddjob(tmp_path, "schedules", "list")
    assert result.returncode == 1
    assert "schedule 'broken'" in result.stderr
    assert "bad cron expression" in result.stderr
