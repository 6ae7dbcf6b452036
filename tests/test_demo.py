"""The README's demo keeps working: real worker process, retries, a failure, a scheduled job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import oddjob_filesystem  # noqa: F401  # the demo's store; nox installs every plugin, so a broken one fails here

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "run.py"


def test_demo_runs_every_kind_of_job() -> None:
    proc = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "ok    demo_jobs:invoice" in output
    assert "ok    demo_jobs:fetch_rates" in output
    assert "uploaded report.pdf on attempt 3" in output
    assert "FAIL  demo_jobs:charge_expired_card [" in output
    assert "reminder: scheduled 3 seconds ahead" in output
    assert "reminder: due in 3 days" not in output  # not run early
    assert "ValueError: card 4111-xxxx expired" in output  # `jobs show` prints the errors
