"""A person's path through the dashboard in headless Chromium, on every backend.

Open the overview, go to the failed job, press Requeue, run a worker, see it
succeeded; delete a job from its page (not offered for a running one); the XSS
argument stays text; a POST without the CSRF token is
refused. Where a backend cannot show something (RabbitMQ offers queue
management only: counts, requeue by id, purge; no job by id, no search), the
page says so instead of failing, and the failed job is purged from the jobs page.

With ``ODDJOB_SCREENSHOTS=<folder>`` the memory run saves the screenshots the
docs use (see docs/dashboard.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from oddjob_core import Oddjob

XSS = "<script>alert(1)</script>"


def _shoot(page: Any, backend: str, name: str, tmp_path: Path) -> None:
    folder = os.environ.get("ODDJOB_SCREENSHOTS")
    target = Path(folder) if folder and backend == "memory" else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"dashboard-{name}.png"), full_page=True)


def _run_worker(app: Oddjob, queue: str) -> None:
    app.run_worker([queue], workers=2, burst=True, burst_wait=0.5, handle_signals=False)


def test_requeue_a_failed_job_in_the_browser(
    oddjob_app: Oddjob, live: Any, page: Any, tmp_path: Path
) -> None:
    import dashjobs

    backend = oddjob_app.settings.storage
    flag = tmp_path / "flag"
    queue = "mail"
    job_id = oddjob_app.options(queue=queue).enqueue(dashjobs.fail_until, str(flag), "the invoice")
    oddjob_app.options(queue="web").enqueue(dashjobs.show, XSS)
    oddjob_app.options(queue="web").enqueue(dashjobs.fail_until, str(flag), XSS)
    _run_worker(oddjob_app, queue)
    oddjob_app.schedule("nightly-report", dashjobs.show, "report", cron="0 3 * * *", queue="web")
    server = live()

    page.goto(server.url + "/schedules")
    assert "nightly-report" in page.locator("table.schedules").inner_text()
    _shoot(page, backend, "schedules", tmp_path)
    page.goto(server.url + "/")
    assert page.locator("h1").inner_text() == "Overview"
    row = page.locator("table.counts tr", has=page.locator(f"a:text-is('{queue}')"))
    assert row.count() == 1
    _shoot(page, backend, "overview", tmp_path)

    page.locator(".card.bad a").click()  # "N failed"
    page.wait_for_url(re.compile(r"/jobs\?state=failed"))
    if backend == "rabbitmq":
        _repair_without_job_pages(oddjob_app, page, flag, queue)
        return
    _shoot(page, backend, "jobs", tmp_path)
    page.locator(f"a[href$='/jobs/{job_id}']").click()
    page.wait_for_url(re.compile(rf"/jobs/{job_id}$"))
    assert "failed" in page.locator("dl.facts").inner_text()
    traceback = page.locator("pre.traceback").first.inner_text()
    assert "<b>not yet</b>" in traceback  # markup in an error message stays text
    _shoot(page, backend, "job-failed", tmp_path)

    page.get_by_role("button", name="Requeue").click()
    page.wait_for_url(re.compile(r"msg=requeued"))
    assert "requeued" in page.locator(".flash").inner_text()
    flag.write_text("go")
    _run_worker(oddjob_app, queue)
    page.goto(server.url + f"/jobs/{job_id}")
    assert "succeeded" in page.locator("dl.facts").inner_text()
    assert "done: the invoice" in page.locator("pre.json").last.inner_text()
    _shoot(page, backend, "job-succeeded", tmp_path)


def test_delete_a_job_from_its_page_but_never_a_running_one(
    oddjob_app: Oddjob, live: Any, page: Any, tmp_path: Path
) -> None:
    import dashjobs

    backend = oddjob_app.settings.storage
    if backend == "rabbitmq":
        pytest.skip("storage 'rabbitmq' has no job page (no job by id); the jobs page purges")
    job_id = oddjob_app.options(queue="web").enqueue(dashjobs.fail_until, "/nonexistent", "old")
    kept = oddjob_app.options(queue="web", delay=3600).enqueue(dashjobs.show, "kept")
    _run_worker(oddjob_app, "web")
    busy = oddjob_app.options(queue="busy").enqueue(dashjobs.show, "busy")
    [claim] = oddjob_app.storage.claim("busy", 1, 300, "a-worker")  # running now
    server = live()

    page.goto(server.url + f"/jobs/{busy}")
    assert "running" in page.locator("dl.facts").inner_text()
    assert page.get_by_role("button", name="Delete").count() == 0
    assert "cannot be deleted" in page.locator(".actions").inner_text()
    _shoot(page, backend, "job-running", tmp_path)
    page.goto(server.url + f"/jobs/{job_id}")
    assert "failed" in page.locator("dl.facts").inner_text()
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"/jobs\?msg=deleted"))
    assert f"deleted job {job_id}" in page.locator(".flash").inner_text()
    assert page.locator(f"table.jobs a[href$='/jobs/{job_id}']").count() == 0
    assert page.locator(f"table.jobs a[href$='/jobs/{kept}']").count() == 1
    _shoot(page, backend, "job-deleted", tmp_path)
    page.goto(server.url + f"/jobs/{job_id}")
    assert "no job with id" in page.content()
    oddjob_app.storage.complete(claim, None)  # its worker still owns it


def _repair_without_job_pages(app: Oddjob, page: Any, flag: Path, queue: str) -> None:
    """RabbitMQ: no job by id and no search (queue management only): pages say so; purge works."""
    assert "Not available here" in page.locator(".unavailable").first.inner_text()
    base = page.url.split("/jobs")[0]
    page.goto(base + "/jobs/00000000-0000-7000-8000-000000000000")
    assert "Not available here" in page.locator(".unavailable").inner_text()
    page.goto(base + f"/jobs?queue={queue}")
    page.locator("select[name=state]").last.select_option("failed")
    page.get_by_role("button", name="Purge").click()
    page.wait_for_url(re.compile(r"msg=purged"))
    assert f"purged 1 failed job(s) of queue {queue}" in page.locator(".flash").inner_text()
    assert app.counts(queue).get(queue, {}).get(_failed(), 0) == 0


def _failed() -> Any:
    from oddjob_core.model import JobState

    return JobState.FAILED


def test_job_data_is_shown_as_text_never_run(oddjob_app: Oddjob, live: Any, page: Any) -> None:
    import dashjobs

    if oddjob_app.settings.storage == "rabbitmq":
        pytest.skip("storage 'rabbitmq' cannot list jobs: no job data reaches a page")

    oddjob_app.options(queue="web").enqueue(dashjobs.fail_until, "/nonexistent/flag", XSS)
    _run_worker(oddjob_app, "web")
    server = live()
    page.goto(server.url + "/jobs?state=failed&queue=web")
    cell = page.locator("table.jobs td.args").first
    assert XSS in cell.inner_text()  # shown literally...
    assert page.locator("table.jobs script").count() == 0  # ...and never became an element
    assert XSS not in page.content()  # the serialized DOM holds it escaped


def test_a_post_without_the_csrf_token_is_refused(oddjob_app: Oddjob, live: Any, page: Any) -> None:
    import dashjobs

    job_id = oddjob_app.options(queue="web").enqueue(dashjobs.fail_until, "/nonexistent", "x")
    _run_worker(oddjob_app, "web")
    server = live()
    page.goto(server.url + "/jobs")  # the browser now holds a CSRF cookie
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'x=1'})).status""",
        f"{server.url}/jobs/{job_id}/requeue",
    )
    assert status == 403
    forged = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST',
             headers: {'Content-Type': 'application/x-www-form-urlencoded'},
             body: 'csrf=' + 'a'.repeat(64)})).status""",
        f"{server.url}/jobs/{job_id}/requeue",
    )
    assert forged == 403
    counts = oddjob_app.counts("web")["web"]
    assert counts.get(_failed(), 0) == 1  # nothing was requeued


def test_the_workers_page_lists_a_running_worker(
    oddjob_app: Oddjob, live: Any, page: Any, tmp_path: Path
) -> None:
    import threading

    from oddjob_core.testing import wait_for
    from oddjob_core.worker_registry import worker_registry_of

    backend = oddjob_app.settings.storage
    server = live()
    registry = worker_registry_of(oddjob_app.storage)
    if registry is None:
        page.goto(server.url + "/workers")
        assert "cannot store worker announcements" in page.locator(".unavailable").inner_text()
        return
    executor = oddjob_app.make_executor()
    runner = threading.Thread(
        target=executor.run,
        kwargs={"queues": ["mail", "web"], "handle_signals": False},
        daemon=True,
    )
    runner.start()
    try:
        assert wait_for(lambda: bool(registry.workers()), timeout=30)
        page.goto(server.url + "/workers")
        row = page.locator("table.workers tbody tr").first.inner_text()
        assert str(os.getpid()) in row
        assert "mail (8)" in row
        assert "web (8)" in row
        _shoot(page, backend, "workers", tmp_path)
    finally:
        executor.stop(timeout=10)
        runner.join(30)
    page.reload()
    assert "No worker is running" in page.locator("table.workers").inner_text()
