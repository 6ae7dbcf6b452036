"""Decoding stored arguments, the job context's cancellation, and chunked success writes."""

from __future__ import annotations

import inspect
import threading
import time
import uuid
from datetime import date
from typing import Any

import msgspec
import pytest

from oddjob_core.arguments import ArgumentPlan
from oddjob_core.clock import utcnow
from oddjob_core.engine import JobContext
from oddjob_core.errors import EnqueueError, LeaseLost, StorageError
from oddjob_core.model import Claim
from oddjob_core.storage import complete_in_chunks
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


def defaults(a: int, b: int = 2, c: str = "c", *, d: int = 4, e: int) -> None:
    """Keyword-capable parameters with and without defaults: the fast binding path."""


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((1,), {"e": 5}),
        ((1, 2, "x"), {"e": 5, "d": 6}),
        ((), {"a": 1, "e": 5}),
        ((1,), {"c": "z", "e": 5, "b": 3}),
        ((1,), {}),  # e missing
        ((), {"e": 5}),  # a missing
        ((1, 2, "x", 4), {"e": 5}),  # too many positionals
        ((1,), {"a": 1, "e": 5}),  # a twice
        ((1,), {"e": 5, "nope": 1}),  # unknown keyword
    ],
)
def test_binding_matches_signature_bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    plan = ArgumentPlan.for_callable("t", defaults, skip_self=False)
    try:
        expected: dict[str, Any] | None = dict(
            inspect.signature(defaults).bind(*args, **kwargs).arguments
        )
    except TypeError:
        expected = None
    if expected is None:
        with pytest.raises(EnqueueError, match="arguments do not fit"):
            plan.encode(args, kwargs)
    else:
        encoded = plan.encode(args, kwargs)
        assert encoded == expected
        assert list(encoded) == list(expected)  # stored in signature order


def test_complete_in_chunks_reports_stale_tokens_lost_rows_and_failed_chunks() -> None:
    claims = [
        Claim(job=make_envelope(), token=str(i), owner="me", lease_expires_at=utcnow())
        for i in range(6)
    ]
    claims[0] = msgspec.structs.replace(claims[0], token="not-ours")
    chunks: list[list[int]] = []

    def write(chunk: list[tuple[uuid.UUID, int, Any]]) -> set[uuid.UUID]:
        chunks.append([token for _, token, _ in chunk])
        if 3 in chunks[-1]:
            raise StorageError("server gone")
        return {job_id for job_id, token, _ in chunk if token != 2}  # row 2 lost its lease

    def token_of(claim: Claim) -> int | None:
        return int(claim.token) if claim.token.isdigit() else None

    errors = complete_in_chunks([(c, None) for c in claims], token_of, write, chunk_size=2)
    assert chunks == [[1, 2], [3, 4], [5]]
    ids = [c.job.id for c in claims]
    assert set(errors) == {ids[0], ids[2], ids[3], ids[4]}
    assert isinstance(errors[ids[0]], LeaseLost)
    assert isinstance(errors[ids[2]], LeaseLost)
    assert str(errors[ids[3]]) == "server gone"
    assert errors[ids[3]] is errors[ids[4]]
