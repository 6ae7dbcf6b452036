"""Safe by default: bind refusal, credentials, CSRF, read-only, escaping, redaction, headers."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from oddjob_dashboard import Credentials, create_app
from oddjob_dashboard.redact import redact_options, redact_text
from oddjob_dashboard.security import BindRefused, check_bind, is_loopback
from starlette.testclient import TestClient

from oddjob_core import Oddjob
from oddjob_core.model import Claim
from oddjob_core.storage import Storage
from oddjob_core.testing import make_envelope

XSS = "<script>alert(1)</script>"


@pytest.fixture
def app() -> Iterator[Oddjob]:
    with Oddjob(storage="memory") as oddjob:
        yield oddjob


def _failed_job(app: Oddjob, argument: str = "x") -> uuid.UUID:
    env = make_envelope("q", arguments={"text": argument})
    app.storage.add([env])
    [claim] = app.storage.claim("q", 1, 30, "test")
    from oddjob_core.clock import utcnow
    from oddjob_core.model import AttemptError

    app.storage.fail(
        claim, AttemptError(attempt=1, type="builtins.ValueError", message=XSS, at=utcnow())
    )
    return env.id


def _csrf(client: TestClient, path: str = "/jobs") -> str:
    html = client.get(path).text
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


# -- binding ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_addresses_need_no_credentials(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, Credentials())


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.org"])
def test_other_addresses_need_credentials(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(BindRefused, match="ODDJOB_DASHBOARD__TOKEN"):
        check_bind(host, Credentials())
    check_bind(host, Credentials(token="t0ken"))
    check_bind(host, Credentials(username="ops", password="pw"))


def test_the_command_refuses_a_public_bind_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODDJOB_")}
    done = subprocess.run(
        [sys.executable, "-m", "oddjob_core", "dashboard", "--host", "0.0.0.0", "--port", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "refusing to serve the dashboard on 0.0.0.0" in done.stderr
    assert "Traceback" not in done.stderr


# -- credentials ----------------------------------------------------------------------


def _basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_credentials_are_required_on_every_request(app: Oddjob) -> None:
    client = TestClient(create_app(app, credentials=Credentials(username="ops", password="pw")))
    assert client.get("/").status_code == 401
    assert client.get("/").headers["www-authenticate"].startswith("Basic")
    assert client.get("/static/style.css").status_code == 401
    assert client.get("/", headers=_basic("ops", "wrong")).status_code == 401
    assert client.get("/", headers=_basic("ops", "pw")).status_code == 200


def test_a_token_works_as_bearer_or_as_basic_password(app: Oddjob) -> None:
    client = TestClient(create_app(app, credentials=Credentials(token="s3cret")))
    assert client.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/", headers=_basic("anyone", "s3cret")).status_code == 200
    assert client.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/", headers={"Authorization": "Basic !!!"}).status_code == 401


# -- CSRF and read-only -------------------------------------------------------------------


def test_a_post_needs_the_csrf_token_of_its_own_cookie(app: Oddjob) -> None:
    job_id = _failed_job(app)
    client = TestClient(create_app(app))
    token = _csrf(client)
    assert client.post(f"/jobs/{job_id}/requeue", data={}).status_code == 403
    assert client.post(f"/jobs/{job_id}/requeue", data={"csrf": "0" * 64}).status_code == 403
    stranger = TestClient(create_app(app))
    _csrf(stranger)  # another browser, another cookie: my token is not valid there
    assert stranger.post(f"/jobs/{job_id}/requeue", data={"csrf": token}).status_code == 403
    assert app.get(job_id).state.value == "failed"
    done = client.post(f"/jobs/{job_id}/requeue", data={"csrf": token}, follow_redirects=False)
    assert done.status_code == 303
    assert app.get(job_id).state.value == "ready"


def test_a_post_from_another_origin_is_refused(app: Oddjob) -> None:
    job_id = _failed_job(app)
    client = TestClient(create_app(app))
    token = _csrf(client)
    refused = client.post(
        f"/jobs/{job_id}/requeue",
        data={"csrf": token},
        headers={"Origin": "http://evil.example"},
    )
    assert refused.status_code == 403
    assert app.get(job_id).state.value == "failed"


def test_state_changes_are_not_reachable_with_get(app: Oddjob) -> None:
    job_id = _failed_job(app)
    client = TestClient(create_app(app))
    assert client.get(f"/jobs/{job_id}/requeue").status_code == 405
    assert app.get(job_id).state.value == "failed"


def test_read_only_shows_no_action_and_refuses_posts(app: Oddjob) -> None:
    job_id = _failed_job(app)
    client = TestClient(create_app(app, read_only=True))
    page = client.get(f"/jobs/{job_id}").text
    assert "read-only" in page
    assert "Requeue" not in page
    assert "Delete" not in page
    assert "Retry all failed" not in client.get("/jobs").text
    token = _csrf(TestClient(create_app(app)))  # any token: read-only refuses first
    assert client.post(f"/jobs/{job_id}/requeue", data={"csrf": token}).status_code == 403
    assert client.post(f"/jobs/{job_id}/delete", data={"csrf": token}).status_code == 403
    assert app.get(job_id).state.value == "failed"


def test_delete_is_offered_unless_the_job_runs_and_needs_the_csrf_token(app: Oddjob) -> None:
    from oddjob_core.errors import JobNotFound

    job_id = _failed_job(app)
    running = make_envelope("busy")
    app.storage.add([running])
    app.storage.claim("busy", 1, 300, "test")
    client = TestClient(create_app(app))
    assert ">Delete</button>" in client.get(f"/jobs/{job_id}").text
    busy_page = client.get(f"/jobs/{running.id}").text
    assert ">Delete</button>" not in busy_page
    assert "A running job cannot be deleted" in busy_page
    token = _csrf(client)
    assert client.post(f"/jobs/{job_id}/delete", data={}).status_code == 403
    refused = client.post(f"/jobs/{running.id}/delete", data={"csrf": token})
    assert "cannot delete this job in its current state" in refused.text
    assert app.get(running.id).state.value == "running"
    done = client.post(f"/jobs/{job_id}/delete", data={"csrf": token}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].startswith("/jobs?msg=deleted")
    with pytest.raises(JobNotFound):
        app.get(job_id)


def test_bulk_retry_requeues_only_the_failed_jobs_matching_the_filter(app: Oddjob) -> None:
    mine = [_failed_job(app, "a") for _ in range(3)]
    other = make_envelope("elsewhere")
    app.storage.add([other])
    client = TestClient(create_app(app))
    token = _csrf(client)
    done = client.post("/jobs/retry-failed", data={"csrf": token, "queue": "q", "arg": 'text="a"'})
    assert done.status_code == 200
    assert "requeued 3 failed job(s)" in done.text
    assert all(app.get(j).state.value == "ready" for j in mine)


# -- escaping, headers, redaction ----------------------------------------------------------


def test_job_data_and_errors_are_escaped_on_every_page(app: Oddjob) -> None:
    job_id = _failed_job(app, XSS)
    client = TestClient(create_app(app))
    for path in ("/", "/jobs", "/jobs?state=failed", f"/jobs/{job_id}", f"/jobs?target={XSS}"):
        html = client.get(path).text
        assert XSS not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get(f"/jobs/{job_id}").text


def test_pages_carry_a_strict_content_security_policy(app: Oddjob) -> None:
    response = TestClient(create_app(app)).get("/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert "unsafe-inline" not in csp


def test_connection_strings_are_shown_without_passwords() -> None:
    assert (
        redact_text("postgresql://app:hunter2@db:5432/jobs") == "postgresql://app:***@db:5432/jobs"
    )
    assert redact_text("host=db password=hunter2 user=app") == "host=db password=*** user=app"
    assert redact_text("Server=db;UID=app;PWD={hun;ter2};") == "Server=db;UID=app;PWD=***;"
    assert redact_text("amqp://guest@rabbit/") == "amqp://guest@rabbit/"
    options = redact_options(
        {"dsn": "postgres://u:hunter2@h/d", "password": "hunter2", "schema": "s", "api_key": "k"}
    )
    assert "hunter2" not in str(options)
    assert options["schema"] == "s"
    assert options["api_key"] == "***"


def test_the_page_header_shows_the_store_without_its_password() -> None:
    with Oddjob(storage="memory", postgres={"dsn": "postgresql://app:hunter2@db/jobs"}) as app:
        app.storage  # noqa: B018 - the memory store, made before the name below changes
        app.settings.storage = "postgres"  # shown, not connected: the header reads settings only
        html = TestClient(create_app(app)).get("/workers").text
    assert "hunter2" not in html
    assert "app:***@db/jobs" in html


# -- degrading visibly -------------------------------------------------------------------


class HotPathOnly(Storage):
    """A store with only the hot path: no management, no registry, no history."""

    name = "hot-path-only"

    def add(self, jobs: Any) -> None: ...
    def claim(self, queue: str, limit: int, lease: float, owner: str) -> list[Claim]:
        return []

    def complete(self, claim: Claim, result: Any = None) -> None: ...
    def retry(self, claim: Claim, run_at: datetime, error: Any) -> None: ...
    def fail(self, claim: Claim, error: Any) -> None: ...
    def release(self, claims: Any) -> None: ...
    def extend(self, claims: Any, lease: float) -> set[uuid.UUID]:
        return set()

    def next_due(self, queue: str) -> datetime | None:
        return None


def test_pages_say_what_a_backend_cannot_show_instead_of_failing() -> None:
    app = Oddjob(storage="memory", storage_instance=HotPathOnly())
    client = TestClient(create_app(app), raise_server_exceptions=True)
    job = uuid.uuid4()
    assert client.get("/schedules").status_code == 200  # no schedule: an empty list
    for path in ("/", "/jobs", f"/jobs/{job}", "/workers"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "Not available here" in response.text, path
        assert "Traceback" not in response.text


def test_unknown_jobs_get_a_404_page(app: Oddjob) -> None:
    client = TestClient(create_app(app))
    assert client.get(f"/jobs/{uuid.uuid4()}").status_code == 404
    assert client.get("/jobs/not-a-uuid").status_code == 404


def test_the_app_mounts_under_a_path_of_a_starlette_app(app: Oddjob) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    job_id = _failed_job(app)
    outer = Starlette(routes=[Mount("/ops/jobs", app=create_app(app))])
    client = TestClient(outer)
    html = client.get("/ops/jobs/").text
    assert 'href="/ops/jobs/static/style.css"' in html
    assert client.get("/ops/jobs/static/htmx.min.js").status_code == 200
    token = _csrf(client, "/ops/jobs/jobs")
    done = client.post(
        f"/ops/jobs/jobs/{job_id}/requeue", data={"csrf": token}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith(f"/ops/jobs/jobs/{job_id}")
    assert app.get(job_id).state.value == "ready"


def test_schedules_are_listed_triggered_paused_and_resumed(app: Oddjob) -> None:
    from oddjob_core.testing import targets

    app.schedule("nightly", targets.noop, 1, cron="0 3 * * *", queue="reports")
    client = TestClient(create_app(app, cache=False))
    page = client.get("/schedules").text
    assert "nightly" in page
    assert "0 3 * * *" in page
    token = _csrf(client, "/schedules")
    done = client.post("/schedules/nightly/pause", data={"csrf": token})
    assert "paused nightly" in done.text
    assert app.schedules.is_paused("nightly")
    assert "Resume" in done.text
    client.post("/schedules/nightly/resume", data={"csrf": token})
    assert not app.schedules.is_paused("nightly")
    triggered = client.post("/schedules/nightly/trigger", data={"csrf": token})
    assert "triggered nightly" in triggered.text
    assert app.counts("reports")["reports"]
    assert client.post("/schedules/nightly/pause", data={}).status_code == 403
