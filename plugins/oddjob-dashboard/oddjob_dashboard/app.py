"""The ASGI application: server-rendered pages over the public management interfaces.

``create_app(oddjob_app)`` returns a Starlette app; mount it in any ASGI
framework (``fastapi_app.mount("/oddjob", create_app(app))``). Storage calls
are synchronous, so page handlers run in Starlette's thread pool.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oddjob_core import Oddjob
from oddjob_core.clock import utcnow
from oddjob_core.errors import ConfigError, JobNotFound, UnsupportedOperation
from oddjob_core.history import MinuteCount, finished_history_of
from oddjob_core.model import JobState

from . import queries
from .cache import MinuteHistory, Snapshot
from .chart import Bucket, bar_chart
from .filters import PAGE_SIZE, JobFilter
from .queries import Unavailable, attempt
from .security import CSRF_FIELD, AuthMiddleware, Credentials, Csrf

HERE = Path(__file__).parent
BULK_LIMIT = 10_000  # jobs one "retry all failed" press requeues at most
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """CSP (no inline script, nothing from elsewhere), no framing, no sniffing, no caching."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, every value: job data is never trusted
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    env.filters["duration"] = _duration
    env.filters["json"] = queries.pretty_json
    env.filters["compact"] = queries.compact_json
    return Jinja2Templates(env=env)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    delta = utcnow() - moment
    if delta.total_seconds() < 0:
        return "in " + _duration(-delta)
    return _duration(delta) + " ago"


class Dashboard:
    """The pages and actions, bound to one ``Oddjob`` app."""

    def __init__(
        self, app: Oddjob, *, read_only: bool, refresh: float, csrf: Csrf, cache: bool = True
    ) -> None:
        self.app = app
        self.read_only = read_only
        self.refresh = refresh
        self.csrf = csrf
        self.templates = _templates()
        # counts and history are snapshots refreshed in the background (see cache.py)
        self.queues: Snapshot[list[queries.QueueRow] | Unavailable] = Snapshot(
            lambda: queries.queue_rows(app, attempt(app.counts)),
            ttl=max(refresh, 1.0) if cache else 0,
        )
        history = finished_history_of(app.storage)
        self.minutes: Snapshot[dict[datetime, MinuteCount] | Unavailable] | None = None
        if history is not None:
            incremental = MinuteHistory(history)
            self.minutes = Snapshot(
                lambda: attempt(incremental), ttl=max(refresh, 1.0) if cache else 0
            )

    def warm(self) -> None:
        """Compute the snapshots now (the CLI calls it in the background at start)."""
        self.queues.get()
        if self.minutes is not None:
            self.minutes.get()

    # -- rendering ---------------------------------------------------------------

    def render(
        self, request: Request, name: str, status_code: int = 200, **context: Any
    ) -> Response:
        root = request.scope.get("root_path", "")
        context.update(
            request=request,
            url=lambda path: root + path,
            csrf_field=CSRF_FIELD,
            csrf_token=self.csrf.token_for(request),
            read_only=self.read_only,
            refresh=self.refresh,
            store=queries.store_info(self.app),
            message=request.query_params.get("msg", ""),
            now=utcnow(),
        )
        response = self.templates.TemplateResponse(request, name, context, status_code=status_code)
        return self.csrf.remember(request, response)

    def redirect(self, request: Request, path: str, message: str = "") -> Response:
        root = request.scope.get("root_path", "")
        sep = "&" if "?" in path else "?"
        target = root + path + (f"{sep}{urlencode({'msg': message})}" if message else "")
        return RedirectResponse(target, status_code=303)

    # -- pages ---------------------------------------------------------------------

    def overview(self, request: Request) -> Response:
        queues, counted_at = self.queues.get()
        minutes: dict[datetime, MinuteCount] | Unavailable = (
            queries.no_history(self.app) if self.minutes is None else self.minutes.get()[0]
        )
        if isinstance(minutes, Unavailable):
            hour: list[Bucket] | Unavailable = minutes
            day: list[Bucket] | Unavailable = minutes
        else:
            hour = queries.throughput(minutes, timedelta(hours=1), timedelta(minutes=1))
            day = queries.throughput(minutes, timedelta(days=1), timedelta(minutes=15))
        charts: dict[str, Any] = {}
        for key, data, every, fmt in (("hour", hour, 10, "%H:%M"), ("day", day, 16, "%H:%M")):
            if isinstance(data, Unavailable):
                charts[key] = data
            else:
                charts[key] = {
                    "svg": bar_chart(
                        data,
                        title=f"jobs finished per {'minute' if key == 'hour' else '15 minutes'}",
                        label_every=every,
                        label_format=fmt,
                    ),
                    "succeeded": sum(b.succeeded for b in data),
                    "failed": sum(b.failed for b in data),
                }
        workers = queries.workers(self.app)
        totals: dict[JobState, int] = {}
        if not isinstance(queues, Unavailable):
            for row in queues:
                for state, n in row.counts.items():
                    totals[state] = totals.get(state, 0) + n
        return self.render(
            request,
            "overview.html",
            page="overview",
            queues=queues,
            summary={
                "waiting": sum(n for s, n in totals.items() if s.waiting),
                "running": totals.get(JobState.RUNNING, 0),
                "failed": totals.get(JobState.FAILED, 0),
            },
            states=queries.STATES,
            charts=charts,
            workers=workers,
            counted_at=datetime.fromtimestamp(counted_at, UTC),
        )

    def jobs(self, request: Request) -> Response:
        chosen = JobFilter.parse(request.query_params)
        kwargs = chosen.search_kwargs()
        page = attempt(lambda: self.app.search(**kwargs, limit=PAGE_SIZE, offset=chosen.offset))
        return self.render(
            request,
            "jobs.html",
            page="jobs",
            f=chosen,
            result=page,
            states=queries.STATES,
            page_size=PAGE_SIZE,
            searchable_arguments=self.app.storage.capabilities.search_by_argument,
        )

    def job(self, request: Request) -> Response:
        raw = request.path_params["job_id"]
        try:
            record = attempt(lambda: self.app.get(raw))
        except JobNotFound as exc:
            return self.render(
                request, "missing.html", status_code=404, page="jobs", error=str(exc)
            )
        if isinstance(record, Unavailable):
            return self.render(
                request, "job.html", page="jobs", job_id=raw, record=None, cannot=record
            )
        return self.render(
            request,
            "job.html",
            page="jobs",
            job_id=raw,
            record=record,
            cannot=None,
            timeline=queries.timeline(record),
        )

    def workers(self, request: Request) -> Response:
        return self.render(
            request, "workers.html", page="workers", workers=queries.workers(self.app)
        )

    def schedules(self, request: Request) -> Response:
        listing = attempt(self._schedules)
        return self.render(request, "schedules.html", page="schedules", schedules=listing)

    def _schedules(self) -> list[Any]:
        try:
            return list(self.app.schedules.list())
        except ConfigError as exc:  # a bad schedule: say which, do not fail the page
            raise UnsupportedOperation(str(exc)) from exc

    async def schedule_action(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        name, action = request.path_params["name"], request.path_params["action"]
        schedules = self.app.schedules
        operation = {
            "trigger": schedules.trigger,
            "pause": schedules.pause,
            "resume": schedules.resume,
        }.get(action)
        if operation is None:
            return PlainTextResponse("unknown action", status_code=404)

        def run() -> str:
            try:
                result = operation(name)
            except (ConfigError, UnsupportedOperation) as exc:
                return f"{action} {name}: {exc}"
            if action == "trigger":
                return f"triggered {name}: job {result}"
            return f"{action}d {name}"

        message = await run_in_threadpool(lambda: attempt(run))
        if isinstance(message, Unavailable):
            message = f"{action} {name}: {message.reason}"
        return self.redirect(request, "/schedules", message)

    # -- actions (POST + CSRF) ----------------------------------------------------

    async def _form(self, request: Request) -> dict[str, str] | Response:
        """The POSTed form, or the refusal (read-only mode, bad CSRF token)."""
        if self.read_only:
            return PlainTextResponse("the dashboard is read-only (--read-only)", status_code=403)
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if not self.csrf.valid(request, form.get(CSRF_FIELD)):
            return PlainTextResponse(
                "CSRF token missing or invalid: reload the page and try again", status_code=403
            )
        return form

    async def job_action(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        raw, action = request.path_params["job_id"], request.path_params["action"]
        try:
            job_id = uuid.UUID(raw)
        except ValueError:
            return PlainTextResponse("not a job id", status_code=404)
        operations = {"requeue": self.app.requeue, "cancel": self.app.cancel}
        operation = {**operations, "delete": self.app.delete}.get(action)
        if operation is None:
            return PlainTextResponse("unknown action", status_code=404)
        done = await run_in_threadpool(lambda: attempt(lambda: operation(job_id)))
        if isinstance(done, Unavailable):
            message = f"{action} failed: {done.reason}"
        elif done and action == "delete":
            return self.redirect(request, "/jobs", f"deleted job {job_id}")
        elif done:
            message = f"{action}d" if action == "requeue" else "cancelled"
        else:
            message = f"cannot {action} this job in its current state"
        return self.redirect(request, f"/jobs/{job_id}", message)

    async def retry_failed(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        chosen = JobFilter.parse(form)
        result = await run_in_threadpool(lambda: attempt(lambda: self._requeue_failed(chosen)))
        if isinstance(result, Unavailable):
            message = f"retry failed jobs: {result.reason}"
        else:
            message = f"requeued {result} failed job(s)"
        return self.redirect(request, "/jobs" + chosen.query(state="failed", offset=0), message)

    def _requeue_failed(self, chosen: JobFilter) -> int:
        kwargs = {**chosen.search_kwargs(), "states": ["failed"]}
        done = 0
        seen: set[uuid.UUID] = set()
        while done < BULK_LIMIT:
            page = self.app.search(**kwargs, limit=min(500, BULK_LIMIT - done), offset=0)
            fresh = [r for r in page.jobs if r.id not in seen]
            if not fresh:
                break
            for record in fresh:
                seen.add(record.id)
                if self.app.requeue(record.id):
                    done += 1
        return done

    async def purge(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        state = form.get("state", "")
        queue = form.get("queue") or None
        if state not in ("succeeded", "failed", "cancelled"):
            return self.redirect(request, "/jobs", "only finished jobs can be purged")
        removed = await run_in_threadpool(
            lambda: attempt(lambda: self.app.purge([state], None, queue))
        )
        if isinstance(removed, Unavailable):
            message = f"purge: {removed.reason}"
        else:
            message = f"purged {removed} {state} job(s)" + (f" of queue {queue}" if queue else "")
        return self.redirect(request, "/jobs", message)


def create_app(
    app: Oddjob | None = None,
    *,
    read_only: bool = False,
    credentials: Credentials | None = None,
    refresh: float = 5.0,
    secret: bytes | None = None,
    cache: bool = True,
) -> Starlette:
    """The dashboard as an ASGI app, to serve alone or mount under a path of your app.

    ``app``: the ``Oddjob`` whose storage to show (default: ``Oddjob()``, i.e.
    oddjob.toml and ODDJOB_* variables). ``credentials``: require them on every
    request (leave None when your own app authenticates before the mount).
    ``secret``: the CSRF key (default: random per process). ``cache``: serve the
    overview's counts and chart from snapshots at most ``refresh`` seconds old,
    recomputed in the background (False: query on every render).
    """
    oddjob = app or Oddjob()
    board = Dashboard(oddjob, read_only=read_only, refresh=refresh, csrf=Csrf(secret), cache=cache)
    middleware = [Middleware(SecurityHeaders)]
    if credentials:
        middleware.append(Middleware(AuthMiddleware, credentials=credentials))
    routes = [
        Route("/", board.overview, name="overview"),
        Route("/jobs", board.jobs, name="jobs"),
        Route("/jobs/retry-failed", board.retry_failed, methods=["POST"]),
        Route("/jobs/purge", board.purge, methods=["POST"]),
        Route("/jobs/{job_id}", board.job, name="job"),
        Route("/jobs/{job_id}/{action}", board.job_action, methods=["POST"]),
        Route("/workers", board.workers, name="workers"),
        Route("/schedules", board.schedules, name="schedules"),
        Route("/schedules/{name}/{action}", board.schedule_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    starlette = Starlette(routes=routes, middleware=middleware)
    starlette.state.oddjob = oddjob
    starlette.state.dashboard = board
    return starlette
