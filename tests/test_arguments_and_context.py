"""Decoding stored arguments back into a call, and the job context's cancellation."""

from __future__ import annotations

import threading
import time
from datetime import date

from oddjob_core.arguments import ArgumentPlan
from oddjob_core.clock import utcnow
from oddjob_core.engine import JobContext
from oddjob_core.model import Claim
from oddjob_core.testing import make_envelope


def keywords(a: int, b: str = "x", *, c: date) -> tuple[int, str, date]:
    return a, b, c


def positional_only(a: int, /, b: int, *rest: int, **extra: str) -> tuple[object, ...]:
    return a, b, rest, extra


def _round_trip(fn: object, *args: object, **kwargs: object) -> object:
    plan = ArgumentPlan.for_callable("t", fn, skip_self=False)  # type: ignore[arg-type]
    call_args, call_kwargs = plan.decode(plan.encode(args, kwargs))
    return fn(*call_args, **call_kwargs)  # type: ignore[operator]


def test_keyword_capable_parameters_decode_to_the_same_call() -> None:
    assert _round_trip(keywords, 1, c=date(2026, 1, 2)) == (1, "x", date(2026, 1, 2))
    assert _round_trip(keywords, 1, "y", c=date(2026, 1, 2)) == (1, "y", date(2026, 1, 2))


def test_positional_only_and_variadic_parameters_decode_to_the_same_call() -> None:
    assert _round_trip(positional_only, 1, 2, 3, 4, k="v") == (1, 2, (3, 4), {"k": "v"})
    assert _round_trip(positional_only, 1, 2) == (1, 2, (), {})


def _context(deadline: float | None) -> JobContext:
    claim = Claim(job=make_envelope(), token="1", owner="me", lease_expires_at=utcnow())
    return JobContext(claim, deadline=deadline)


def test_context_is_cancelled_once_its_deadline_passed() -> None:
    ctx = _context(time.monotonic() + 0.05)
    assert not ctx.cancelled
    time.sleep(0.06)
    assert ctx.cancelled
    assert ctx.cancel_event.is_set()


def test_cancel_event_wakes_a_job_sleeping_on_it() -> None:
    ctx = _context(None)
    woke: list[bool] = []
    sleeper = threading.Thread(target=lambda: woke.append(ctx.cancel_event.wait(5)))
    sleeper.start()
    time.sleep(0.05)
    assert not ctx.cancelled
    ctx.cancel_event.set()  # what the lease keeper does when the worker stops or the lease is lost
    sleeper.join(2)
    assert woke == [True]
    assert ctx.cancelled
