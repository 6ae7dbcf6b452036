"""Behaviour tests every execution backend must pass (on the in-memory store by default).

Subclass ``ExecutorSuite`` and set ``executor_name``; pytest collects the subclass.
Override the ``storage_settings`` fixture to run it on a real backend, and set
``records_across_processes`` when jobs run in child processes (the targets then
record into files the test reads).
"""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import time
import uuid
from typing import Any

from ..app import Oddjob
from ..enqueuing import call
from ..hookspecs import hookimpl
from ..model import JobState, RetryPolicy
from . import targets
from .envelopes import make_envelope
from .executor_lifecycle import ExecutorLifecycleTests, LeaseLosingStorage
from .executor_suite_base import AppFactory, ExecutorSuiteBase
from .targets import SEEN, Colour, Order, Point

__all__ = ["AppFactory", "ExecutorSuite", "ExecutorSuiteBase", "LeaseLosingStorage"]


class ExecutorSuite(ExecutorLifecycleTests):
    """Conformance tests for execution backends."""

    __test__ = False

    def test_suite_tests_are_not_overridden_silently(self) -> None:
        for name in dir(ExecutorSuite):
            if name.startswith("test_") and getattr(type(self), name, None) is not getattr(
                ExecutorSuite, name
            ):
                assert name in self.overridden_tests, f"{name} overridden without a reason"

    # -- running -------------------------------------------------------------------

    def test_every_job_runs_exactly_once(self, app: Oddjob) -> None:
        ids = app.enqueue_many([call(targets.echo, "once", i) for i in range(500)])
        self.drain(app, workers=8)
        assert sorted(SEEN["once"]) == list(range(500))
        assert app.counts()["default"] == {JobState.SUCCEEDED: 500}
        assert app.get(ids[0]).result == 0

    def test_arguments_come_back_as_their_annotated_types(self, app: Oddjob) -> None:
        when = dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)
        order = Order(id=uuid.uuid4(), total=decimal.Decimal("19.99"), lines=[Point(1, 2)])
        app.enqueue(
            targets.typed,
            "typed",
            when,
            dt.date(2026, 12, 1),
            order.id,
            decimal.Decimal("0.10"),
            b"\x00\xffbytes",
            Colour.BLUE,
            Point(3, 4),
            order,
            None,
            {"a": [when]},
            7,
            8,
            fee=decimal.Decimal("1.5"),
        )
        self.drain(app)
        [seen] = SEEN["typed"]
        assert seen == dict(
            when=when,
            day=dt.date(2026, 12, 1),
            ident=order.id,
            amount=decimal.Decimal("0.10"),
            blob=b"\x00\xffbytes",
            colour=Colour.BLUE,
            point=Point(3, 4),
            order=order,
            maybe=None,
            nested={"a": [when]},
            rest=(7, 8),
            extra={"fee": decimal.Decimal("1.5")},
        )
        assert type(seen["amount"]) is decimal.Decimal
        assert seen["when"].tzinfo is not None

    def test_async_jobs_run_and_return(self, app: Oddjob) -> None:
        job_id = app.enqueue(targets.async_echo, "async", 21)
        self.drain(app)
        assert SEEN["async"] == [21]
        assert app.get(job_id).result == 42

    def test_method_target_gets_its_instance_from_the_hook(self, app: Oddjob) -> None:
        class Container:
            @hookimpl
            def oddjob_resolve_instance(self, cls: type) -> object | None:
                return targets.Mailer("injected") if cls is targets.Mailer else None

        app.registry.pm.register(Container())
        job_id = app.enqueue(targets.Mailer.send, "mail", "ada@example.com")
        self.drain(app)
        assert SEEN["mail"] == [("injected", "ada@example.com")]
        assert app.get(job_id).result == "injected->ada@example.com"

    def test_failing_dependency_resolution_is_a_failed_attempt(self, app: Oddjob) -> None:
        class BrokenContainer:
            @hookimpl
            def oddjob_resolve_instance(self, cls: type) -> object | None:
                raise LookupError(f"no binding for {cls.__name__}")

        app.registry.pm.register(BrokenContainer())
        job_id = app.options(retry=RetryPolicy(max_retries=0)).enqueue(
            targets.Mailer.send, "mail", "x@example.com"
        )
        self.drain(app)
        record = app.get(job_id)
        assert record.state is JobState.FAILED
        assert record.envelope.errors[0].message == "no binding for Mailer"
        assert SEEN["mail"] == []

    def test_job_sees_its_attempt_and_recovered_flag(self, app: Oddjob) -> None:
        job_id = app.enqueue(targets.context_info, "ctx")
        self.drain(app)
        assert SEEN["ctx"] == [(job_id, 1, False)]

    # -- retries and failures --------------------------------------------------------

    def test_failing_job_is_retried_until_it_succeeds(self, app: Oddjob) -> None:
        job_id = app.enqueue(targets.fail_times, "flaky", 2)
        self.drain(app)
        record = app.get(job_id)
        assert record.state is JobState.SUCCEEDED
        assert SEEN["flaky"] == [1, 2, 3]
        assert [e.message for e in record.envelope.errors] == [
            "planned failure 1 of 2",
            "planned failure 2 of 2",
        ]
        assert "RuntimeError" in record.envelope.errors[0].traceback
        assert record.result == "succeeded on attempt 3"

    def test_job_fails_for_good_when_retries_run_out(self, app: Oddjob) -> None:
        job_id = app.options(retry=RetryPolicy(max_retries=1, min_wait=0.05, jitter=0)).enqueue(
            targets.fail_times, "doomed", 5
        )
        self.drain(app)
        record = app.get(job_id)
        assert record.state is JobState.FAILED
        assert SEEN["doomed"] == [1, 2]
        assert len(record.envelope.errors) == 2

    def test_give_up_on_stops_retrying_at_once(self, app: Oddjob) -> None:
        policy = RetryPolicy(max_retries=5, min_wait=0.05, give_up_on=("ValueError",))
        job_id = app.options(retry=policy).enqueue(targets.raise_value_error, "giveup")
        self.drain(app)
        assert app.get(job_id).state is JobState.FAILED
        assert SEEN["giveup"] == [1]

    def test_job_can_ask_to_be_retried_later(self, app: Oddjob) -> None:
        job_id = app.enqueue(targets.ask_retry, "later", 0.4)
        self.drain(app)
        first, second = SEEN["later"]
        assert second - first >= 0.35
        assert app.get(job_id).state is JobState.SUCCEEDED

    def test_untrusted_target_is_refused_without_running(self, app: Oddjob) -> None:
        env = make_envelope(target="os:system", arguments={"command": "echo pwned"})
        app.storage.add([env])
        self.drain(app)
        record = app.get(env.id)
        assert record.state is JobState.FAILED
        assert record.envelope.attempts == 1
        assert "not trusted" in record.envelope.errors[0].message

    def test_missing_target_fails_once_as_target_missing(self, app: Oddjob) -> None:
        missing: list[str] = []

        class Watcher:
            @hookimpl
            def oddjob_job_target_missing(self, claim: Any, error: Any) -> None:
                missing.append(claim.job.target)

        app.registry.pm.register(Watcher())
        env = make_envelope(target="oddjob_core.testing.targets:renamed_away")
        app.storage.add([env])
        self.drain(app)
        record = app.get(env.id)
        assert record.state is JobState.FAILED
        assert record.envelope.attempts == 1
        assert missing == ["oddjob_core.testing.targets:renamed_away"]

    def test_undecodable_arguments_fail_with_the_decode_error(self, app: Oddjob) -> None:
        env = make_envelope(
            target="oddjob_core.testing.targets:echo",
            arguments={"key": "x", "value": 1, "surprise": True},
        )
        bad_type = make_envelope(
            target="oddjob_core.testing.targets:fail_times",
            arguments={"key": "y", "failures": "many"},
        )
        app.storage.add([env, bad_type])
        self.drain(app)
        assert "surprise" in app.get(env.id).envelope.errors[0].message
        assert "failures" in app.get(bad_type.id).envelope.errors[0].message
        assert app.get(bad_type.id).state is JobState.FAILED

    # -- timeouts ---------------------------------------------------------------------

    def test_async_job_is_stopped_at_its_timeout(self, app: Oddjob) -> None:
        policy = RetryPolicy(max_retries=0)
        job_id = app.options(timeout=0.2, retry=policy).enqueue(targets.async_sleep, "slow", 5.0)
        started = time.monotonic()
        self.drain(app)
        assert time.monotonic() - started < 4.0
        record = app.get(job_id)
        assert record.state is JobState.FAILED
        assert record.envelope.errors[0].type == "oddjob_core.retrying.JobTimeout"
        assert SEEN["slow"] == ["start"]

    def test_sync_job_sees_cooperative_cancellation_at_its_timeout(self, app: Oddjob) -> None:
        policy = RetryPolicy(max_retries=0)
        job_id = app.options(timeout=0.3, retry=policy).enqueue(targets.cooperative, "coop", 10)
        self.drain(app)
        record = app.get(job_id)
        assert record.state is JobState.FAILED
        assert record.envelope.errors[0].type == "oddjob_core.retrying.JobTimeout"
        assert SEEN["coop"] == []

    # -- coordination -----------------------------------------------------------------

    def test_hooks_run_after_storage_recorded_the_state(self, app: Oddjob) -> None:
        seen: list[tuple[str, JobState]] = []

        class Watcher:
            @hookimpl
            def oddjob_job_succeeded(self, claim: Any, result: Any, duration: float) -> None:
                seen.append(("succeeded", app.get(claim.job.id).state))

            @hookimpl
            def oddjob_job_retrying(self, claim: Any, error: Any, run_at: Any) -> None:
                seen.append(("retrying", app.get(claim.job.id).state))

        app.registry.pm.register(Watcher())
        app.enqueue(targets.fail_times, "hooks", 1)
        self.drain(app)
        assert seen == [("retrying", JobState.RETRYING), ("succeeded", JobState.SUCCEEDED)]

    def test_backpressure_stops_claiming_at_twice_the_workers(self, app: Oddjob) -> None:
        """Backpressure: no claim while 2 × workers jobs wait; never over 3 × workers - 1."""
        saturated: list[tuple[int, int]] = []

        class Watcher:
            @hookimpl
            def oddjob_queue_saturated(self, queue: str, pending: int, workers: int) -> None:
                saturated.append((pending, workers))

        app.registry.pm.register(Watcher())
        app.enqueue_many([call(targets.sleep_for, "bp", 0.05) for _ in range(40)])
        self.drain(app, workers=2)
        assert saturated, "the coordinator never stopped claiming"
        assert all(2 * workers <= pending <= 3 * workers - 1 for pending, workers in saturated)
        assert targets.MAX_RUNNING[0] <= 2
        assert SEEN["bp"].count("end") == 40

    def test_burst_leaves_jobs_that_are_not_due(self, app: Oddjob) -> None:
        now_id = app.enqueue(targets.echo, "burst", 1)
        later_id = app.options(delay=dt.timedelta(days=3)).enqueue(targets.echo, "burst", 2)
        self.drain(app, burst_wait=0.0)
        assert app.get(now_id).state is JobState.SUCCEEDED
        assert app.get(later_id).state is JobState.SCHEDULED
        assert SEEN["burst"] == [1]

    def test_stop_finishes_running_jobs_and_gives_back_the_rest(self, app: Oddjob) -> None:
        ids = app.enqueue_many([call(targets.sleep_for, "stop", 0.4) for _ in range(10)])
        executor = app.make_executor()
        executor.default_workers = 2
        thread = threading.Thread(
            target=executor.run, kwargs={"handle_signals": False}, daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while SEEN["stop"].count("start") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        executor.stop(timeout=10)
        thread.join(10)
        assert not thread.is_alive()
        states = [app.get(i).state for i in ids]
        started = SEEN["stop"].count("start")
        assert SEEN["stop"].count("end") == started
        assert states.count(JobState.SUCCEEDED) == started
        assert states.count(JobState.READY) == 10 - started
        assert all(
            app.get(i).envelope.attempts == 0 for i in ids if app.get(i).state is JobState.READY
        )

    def test_shell_api_starts_and_stops_queues_independently(self, app: Oddjob) -> None:
        app.options(queue="a").enqueue_many([call(targets.echo, "shell", i) for i in range(20)])
        app.options(queue="b").enqueue(targets.echo, "shell", 99)
        executor = app.make_executor()
        executor.start_queue("a", workers=2)
        deadline = time.monotonic() + 20
        while len(SEEN["shell"]) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        executor.stop_queue("a", timeout=5)
        executor.stop(timeout=5)
        assert sorted(SEEN["shell"]) == list(range(20))  # queue b was never started
        assert app.counts()["b"] == {JobState.READY: 1}

    def test_enqueued_hook_sees_each_batch(self, app: Oddjob) -> None:
        batches: list[int] = []

        class Watcher:
            @hookimpl
            def oddjob_job_enqueued(self, jobs: Any) -> None:
                batches.append(len(jobs))

        app.registry.pm.register(Watcher())
        app.enqueue(targets.noop)
        app.enqueue_many([call(targets.noop, i) for i in range(5)])
        assert batches == [1, 5]
