"""The whole path in one process: ``Oddjob(storage="rabbitmq")``, enqueue, a burst worker, retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from oddjob_core import Oddjob, RetryPolicy, call
from oddjob_core.model import JobState
from oddjob_core.testing import targets

TESTS = Path(__file__).parent
URL = "amqp://guest:guest@127.0.0.1:5672/"


def test_app_runs_jobs_retries_through_the_ladder_and_fails_for_good(
    prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_storage: object
) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    import rmqjobs

    lines = tmp_path / "runs.txt"
    app = Oddjob(
        storage="rabbitmq",
        rabbitmq={"url": URL, "prefix": prefix},
        allowed_prefixes=["rmqjobs", "oddjob_core.testing.targets"],
        poll_interval=0.2,
    )
    try:
        app.enqueue_many([call(targets.append_line, str(lines), str(i)) for i in range(20)])
        app.options(retry=RetryPolicy(max_retries=2, min_wait=1, jitter=0)).enqueue(
            rmqjobs.flaky, str(lines), "flaky"
        )
        app.options(retry=RetryPolicy(max_retries=0)).enqueue(
            rmqjobs.fail_if, str(lines), "doomed", True
        )
        app.run_worker(["default"], workers=4, burst=True, burst_wait=3, handle_signals=False)
        runs = lines.read_text().splitlines()
        assert sorted(r for r in runs if r.isdigit()) == sorted(str(i) for i in range(20))
        assert "flaky attempt=1" in runs, runs
        assert "flaky attempt=2" in runs, runs  # the burst waited for the retry
        counts = app.storage.counts("default")["default"]
        assert counts == {JobState.READY: 0, JobState.SCHEDULED: 0, JobState.FAILED: 1}
    finally:
        app.storage.delete_topology(["default"])  # type: ignore[attr-defined]
        app.close()
