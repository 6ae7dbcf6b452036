"""Bad calls fail at enqueue with a message naming the culprit, and nothing is stored."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator

import pytest

from oddjob_core import EnqueueError, Oddjob, RetryPolicy, call, job
from oddjob_core.model import JobState
from oddjob_core.testing import targets


@pytest.fixture
def app() -> Iterator[Oddjob]:
    with Oddjob(storage="memory", allowed_prefixes=["oddjob_core.testing.targets"]) as instance:
        yield instance


def stored(app: Oddjob) -> int:
    return sum(sum(per.values()) for per in app.counts().values())


def test_lambda_is_refused(app: Oddjob) -> None:
    with pytest.raises(EnqueueError, match="lambda or nested function"):
        app.enqueue(lambda: None)
    assert stored(app) == 0


def test_nested_function_is_refused(app: Oddjob) -> None:
    def inner() -> None: ...

    with pytest.raises(EnqueueError, match="nested function"):
        app.enqueue(inner)


def test_bound_method_is_refused_with_the_fix(app: Oddjob) -> None:
    with pytest.raises(EnqueueError, match=r"enqueue the unbound Mailer\.send"):
        app.enqueue(targets.Mailer().send, "k", "to")


def test_unencodable_argument_names_the_parameter_and_type(app: Oddjob) -> None:
    with pytest.raises(EnqueueError, match=r"argument 'value' .*threading\.Lock|_thread\.lock"):
        app.enqueue(targets.echo, "k", threading.Lock())
    assert stored(app) == 0


def test_arguments_that_do_not_fit_the_signature(app: Oddjob) -> None:
    with pytest.raises(EnqueueError, match=r"arguments do not fit .*fail_times"):
        app.enqueue(targets.fail_times, "k")
    with pytest.raises(EnqueueError, match="unexpected keyword argument 'nope'"):
        app.enqueue(targets.echo, "k", 1, nope=2)


def test_argument_that_contradicts_its_annotation(app: Oddjob) -> None:
    with pytest.raises(EnqueueError, match=r"argument 'failures' .* does not match"):
        app.enqueue(targets.fail_times, "k", "three")


def test_batch_is_all_or_nothing_when_one_call_is_bad(app: Oddjob) -> None:
    with pytest.raises(EnqueueError):
        app.enqueue_many([call(targets.echo, "k", 1), call(targets.fail_times, "k", "x")])
    assert stored(app) == 0


def test_naive_run_at_is_refused(app: Oddjob) -> None:
    with pytest.raises(EnqueueError, match="naive datetime"):
        app.options(run_at=dt.datetime(2030, 1, 1)).enqueue(targets.noop)


def test_bad_queue_name_is_refused(app: Oddjob) -> None:
    with pytest.raises(EnqueueError, match="queue name 'a b' is invalid"):
        app.options(queue="a b")
    with pytest.raises(EnqueueError, match=r"queue name '\.\.' is invalid"):
        app.options(queue="..")


def test_enqueue_options_never_collide_with_job_kwargs(app: Oddjob) -> None:
    job_id = app.options(queue="q", delay=60).enqueue(targets.echo, key="queue", value="delay")
    record = app.get(job_id)
    assert record.envelope.queue == "q"
    assert record.envelope.arguments == {"key": "queue", "value": "delay"}
    assert record.state is JobState.SCHEDULED


@job(queue="mail", retry=RetryPolicy(max_retries=9), priority=4, timeout=dt.timedelta(minutes=2))
def decorated(to: str) -> None:
    """A registered job with defaults."""


def test_job_decorator_defaults_apply_and_explicit_options_win(app: Oddjob) -> None:
    first = app.get(app.enqueue(decorated, "a@b"))
    assert (first.envelope.queue, first.envelope.retry.max_retries) == ("mail", 9)
    assert (first.envelope.priority, first.envelope.timeout) == (4, 120.0)
    second = app.get(app.options(queue="urgent", priority=0).enqueue(decorated, "a@b"))
    assert (second.envelope.queue, second.envelope.priority) == ("urgent", 0)


def test_decorated_function_still_runs_directly() -> None:
    assert decorated("x") is None


def test_enqueue_async_from_an_event_loop(app: Oddjob) -> None:
    import asyncio

    ids = asyncio.run(app.enqueue_many_async([call(targets.noop, i) for i in range(3)]))
    one = asyncio.run(app.enqueue_async(targets.noop, 9))
    assert len({*ids, one}) == 4
    assert stored(app) == 4


ENQUEUE_PATHS: dict[str, Callable[[Oddjob], object]] = {
    "app": lambda a: a.enqueue(targets.noop),
    "options": lambda a: a.options(queue="other").enqueue(targets.noop),
    "many": lambda a: a.enqueue_many([call(targets.noop)]),
    "by name": lambda a: a.enqueue("oddjob_core.testing.targets:noop"),
}


@pytest.mark.parametrize("how", ENQUEUE_PATHS)
def test_the_untrusted_target_warning_points_at_the_callers_line(how: str) -> None:
    """Not at a line inside oddjob_core, whichever enqueue path raised it."""
    from oddjob_core.errors import UntrustedTargetWarning

    with Oddjob(storage="memory") as untrusting, pytest.warns(UntrustedTargetWarning) as seen:
        ENQUEUE_PATHS[how](untrusting)
    assert [w.filename for w in seen] == [__file__]
