"""The backend kit: the transient-error retry loop, JobQuery.matches and Page.of."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest

from oddjob_core.backend import TransientRetry
from oddjob_core.clock import utcnow
from oddjob_core.errors import StorageError, StorageUnavailable
from oddjob_core.model import JobQuery, JobRecord, JobState, Page
from oddjob_core.testing import make_envelope


class Blip(Exception):
    """A transient driver error."""


class Broken(Exception):
    """A permanent driver error."""


def retry_loop(timeout: float = 5.0) -> tuple[TransientRetry, list[BaseException]]:
    recovered: list[BaseException] = []
    loop = TransientRetry(
        target="test-db",
        timeout=timeout,
        stopped=threading.Event(),
        errors=(Blip, Broken),
        is_transient=lambda exc: isinstance(exc, Blip),
        failed=lambda what, exc: StorageError(f"{what} failed: {exc}"),
        unavailable=lambda what, exc, tries: StorageUnavailable(f"{what}: {tries} tries"),
        describe=str,
        log=logging.getLogger("test"),
        recover=recovered.append,
        first_wait=0.001,
        max_wait=0.01,
    )
    return loop, recovered


def test_transient_failures_are_retried_and_the_retry_is_flagged() -> None:
    loop, recovered = retry_loop()
    seen: list[bool] = []

    def operation(retried: bool) -> str:
        seen.append(retried)
        if len(seen) < 3:
            raise Blip("connection lost")
        return "done"

    assert loop.run("writing", operation) == "done"
    assert seen == [False, True, True]
    assert len(recovered) == 2


def test_a_permanent_failure_is_not_retried() -> None:
    loop, _ = retry_loop()
    calls: list[bool] = []

    def operation(retried: bool) -> None:
        calls.append(retried)
        raise Broken("syntax error")

    with pytest.raises(StorageError, match="writing failed: syntax error"):
        loop.run("writing", operation)
    assert calls == [False]


def test_a_transient_failure_past_the_deadline_is_unavailable() -> None:
    loop, _ = retry_loop(timeout=0.05)

    def operation(retried: bool) -> None:
        raise Blip("down")

    with pytest.raises(StorageUnavailable, match="writing: "):
        loop.run("writing", operation)


def _record(queue: str, target: str, state: JobState, **arguments: object) -> JobRecord:
    env = make_envelope(queue, target=target, arguments=dict(arguments))
    return JobRecord(envelope=env, state=state, updated_at=utcnow())


def test_page_of_filters_sorts_newest_first_and_pages() -> None:
    records = [_record("q", "m:a", JobState.READY, n=i) for i in range(5)]
    records += [_record("q", "m:b", JobState.FAILED, n=9), _record("other", "m:a", JobState.READY)]
    page = Page.of(records, JobQuery(queue="q", target="m:a", limit=2, offset=1))
    assert page.total == 5
    ids = sorted((r.id for r in records[:5]), reverse=True)
    assert [r.id for r in page.jobs] == ids[1:3]
    assert Page.of(records, JobQuery(states=(JobState.FAILED,))).total == 1
    assert Page.of(records, JobQuery(arguments={"n": 9})).total == 1
    assert Page.of(records, JobQuery(arguments={"missing": None})).total == 0
    later = utcnow() + timedelta(seconds=5)
    assert Page.of(records, JobQuery(created_after=later)).total == 0
