"""``app.wait`` / ``wait_async``: the result as the return annotation, or the job's error (#19)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from oddjob_core import JobFailed, Oddjob, RetryPolicy, WaitTimeout
from oddjob_core.testing.cli import ODDJOB, project


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Oddjob]:
    """An app on a user's project folder, with a real ``oddjob worker`` process running it."""
    root = project(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    worker = subprocess.Popen(
        [ODDJOB, "worker", "--quiet"], cwd=root, stderr=subprocess.PIPE, text=True
    )
    with Oddjob() as instance:
        yield instance
    worker.terminate()
    worker.wait(60)


def test_wait_returns_the_result_as_the_return_annotation(app: Oddjob) -> None:
    job_id = app.enqueue("myapp.jobs:total", Decimal("12.5"), 3)
    result = app.wait(job_id, timeout=60)
    assert result == Decimal("37.5")
    assert type(result) is Decimal
    assert app.wait(app.enqueue("myapp.jobs:hello", "you"), timeout=60) == "hi you"


def test_wait_raises_the_jobs_error_when_it_failed(app: Oddjob) -> None:
    job_id = app.options(retry=RetryPolicy(max_retries=0)).enqueue("myapp.jobs:boom", "no luck")
    with pytest.raises(
        JobFailed, match=r"after 1 attempt\(s\): builtins.ValueError: no luck"
    ) as info:
        app.wait(job_id, timeout=60)
    assert info.value.error is not None
    assert info.value.error.type.endswith("ValueError")
    assert "Traceback" in info.value.error.traceback


def test_wait_gives_up_after_its_timeout(app: Oddjob) -> None:
    job_id = app.options(delay=timedelta(days=3)).enqueue("myapp.jobs:hello", "later")
    with pytest.raises(WaitTimeout, match=r"did not finish within 0\.3 s"):
        app.wait(job_id, timeout=0.3)
    with pytest.raises(TimeoutError):
        app.wait(str(job_id)[-12:], timeout=0.1)


def test_wait_async(app: Oddjob) -> None:
    async def main() -> Decimal:
        job_id = await app.enqueue_async("myapp.jobs:total", Decimal("0.1"), 3)
        return await app.wait_async(job_id, timeout=60)  # type: ignore[no-any-return]

    assert asyncio.run(main()) == Decimal("0.3")
