"""The worker smoke test: what a user's first worker meets, on the configured backend and executor.

One queue of its own: a job that succeeds, one that fails once then succeeds
on retry, one that fails for good, one scheduled a moment ahead, and one whose
claim was taken by a worker that then died (its lease expires and a live
worker recovers it). One burst worker runs them all.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ..app import Oddjob
from ..config import Settings
from ..hookspecs import hookimpl
from ..model import AttemptError, Claim, RetryPolicy
from ..plugins import PluginRegistry
from ..storage import Storage
from ..testing import targets
from .report import Check

SECTION = "worker smoke test"


class _Outcomes:
    """Collects outcome hooks by job id (called after storage recorded them)."""

    def __init__(self) -> None:
        self.succeeded: dict[Any, Claim] = {}
        self.retrying: dict[Any, Claim] = {}
        self.failed: dict[Any, Claim] = {}

    @hookimpl
    def oddjob_job_succeeded(self, claim: Claim, result: Any, duration: float) -> None:
        self.succeeded[claim.job.id] = claim

    @hookimpl
    def oddjob_job_retrying(self, claim: Claim, error: AttemptError, run_at: Any) -> None:
        self.retrying[claim.job.id] = claim

    @hookimpl
    def oddjob_job_failed(self, claim: Claim, error: AttemptError) -> None:
        self.failed[claim.job.id] = claim


def smoke_checks(
    settings: Settings, registry: PluginRegistry, backend: str, make: Callable[[], Storage]
) -> list[Check]:
    outcomes = _Outcomes()
    probed = PluginRegistry(extra=[("oddjob-doctor-probe", outcomes)])
    queue = f"doctor-{secrets.token_hex(3)}"
    key = secrets.token_hex(4)
    app = Oddjob(
        registry=probed,
        storage_instance=make(),
        storage=backend,
        executor=settings.executor,
        allowed_prefixes=["oddjob_core.testing.targets"],
        default_queue=queue,
        lease=6.0,
        poll_interval=0.2,
    )
    checks: list[Check] = []
    try:
        started = time.monotonic()
        # a worker that claims the first job and dies: nothing completes or extends its lease
        killed = app.options(queue=queue).enqueue(targets.echo, f"{key}-k", 2)
        dead = make()
        taken = dead.claim(queue, 1, 1.5, "doctor-killed-worker")
        dead.close()  # gone without an outcome: the lease runs out (or the broker redelivers)
        quick = RetryPolicy(max_retries=2, min_wait=0.2, max_wait=0.5, jitter=0.0)
        ran = app.options(queue=queue).enqueue(targets.echo, f"{key}-run", 42)
        retried = app.options(queue=queue, retry=quick).enqueue(targets.fail_times, f"{key}-r", 1)
        failing = app.options(queue=queue, retry=RetryPolicy(max_retries=0)).enqueue(
            targets.raise_value_error, f"{key}-f"
        )
        scheduled = app.options(queue=queue, delay=timedelta(seconds=1.5)).enqueue(
            targets.echo, f"{key}-s", 1
        )
        enqueued_at = time.monotonic()
        app.run_worker(
            [queue], workers=2, burst=True, burst_wait=4.0, handle_signals=False, schedules=False
        )
        took = time.monotonic() - started

        def check(name: str, ok: bool, detail: str) -> None:
            # one burst ran them all: its time goes to the first check
            seconds = 0.0 if checks else took
            outcome = "passed" if ok else "failed"
            checks.append(Check(SECTION, name, outcome, seconds, "" if ok else detail))

        check("enqueue and run", ran in outcomes.succeeded, "the job never succeeded")
        check(
            "retry after a failure",
            retried in outcomes.retrying and retried in outcomes.succeeded,
            f"retrying seen: {retried in outcomes.retrying}, then succeeded: {retried in outcomes.succeeded}",
        )
        check(
            "fail for good",
            failing in outcomes.failed and failing not in outcomes.succeeded,
            "not failed",
        )
        check("scheduled job runs when due", scheduled in outcomes.succeeded, "never ran")
        recovered = outcomes.succeeded.get(killed)
        check(
            "killed claim recovered",
            any(c.job.id == killed for c in taken)
            and recovered is not None
            and (recovered.recovered or recovered.job.attempts >= 2),
            f"claimed by the dead worker: {any(c.job.id == killed for c in taken)}, "
            f"recovered: {recovered is not None} "
            f"(after {time.monotonic() - enqueued_at:.1f} s)",
        )
    finally:
        app.close()
    return checks
