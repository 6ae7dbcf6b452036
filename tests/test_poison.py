"""Poison isolation in the core (issue #12): bad input fails alone and says why."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from oddjob_core import EnqueueError, Oddjob, job
from oddjob_core.cli import build_cli
from oddjob_core.model import JobState
from oddjob_core.poison import CorruptJob, check_queue_name, check_route, decode_stored
from oddjob_core.testing import make_envelope, targets

TARGETS = "oddjob_core.testing.targets"


@pytest.fixture
def app() -> Iterator[Oddjob]:
    with Oddjob(storage="memory", allowed_prefixes=[TARGETS]) as instance:
        yield instance


class Node(msgspec.Struct):
    child: Node | None = None


@job
def takes_a_tree(payload: Node) -> None:
    pass


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


# -- queue names: one validator everywhere -------------------------------------------


@pytest.mark.parametrize("name", ["../x", "a/b", "", "..", "x" * 101, "amq space"])
def test_one_validator_refuses_bad_queue_names(name: str) -> None:
    with pytest.raises(ValueError, match="queue name"):
        check_queue_name(name)


def test_job_decorator_refuses_a_bad_queue_name() -> None:
    with pytest.raises(EnqueueError, match=r"queue name '\.\./x' is invalid"):
        job(queue="../x")


def test_worker_cli_refuses_a_bad_queue_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_cli(), ["worker", "--burst", "-q", "../x"])
    assert result.exit_code == 2
    assert "queue name '../x' is invalid" in result.output


def test_config_refuses_a_bad_queue_table() -> None:
    from oddjob_core.errors import ConfigError

    with pytest.raises(ConfigError, match="queue name"):
        Oddjob(storage="memory", queues={"../x": {"workers": 1}})


# -- enqueue: the caller's error, never a bare RecursionError --------------------------


def test_bad_delay_and_timeout_are_refused(app: Oddjob) -> None:
    with pytest.raises(EnqueueError, match="delay must be >= 0"):
        app.options(delay=-5)
    with pytest.raises(EnqueueError, match="timeout must be > 0"):
        app.options(timeout=-1)
    with pytest.raises(EnqueueError, match="timeout must be > 0"):
        job(timeout=0)


def test_argument_nested_past_the_recursion_limit_is_an_enqueue_error(app: Oddjob) -> None:
    with pytest.raises(EnqueueError, match="argument 'value'"):
        app.enqueue(targets.echo, "k", nested(sys.getrecursionlimit() + 100))


def test_lone_surrogate_is_an_enqueue_error(tmp_path: Path) -> None:
    with (
        Oddjob(
            storage="filesystem", allowed_prefixes=[TARGETS], filesystem={"path": str(tmp_path)}
        ) as app,
        pytest.raises(EnqueueError, match="lone surrogates"),
    ):
        app.enqueue(targets.echo, "k", "bad \udc80")


# -- the decode path ------------------------------------------------------------------


def test_any_decode_exception_is_a_corrupt_job() -> None:
    def boom(data: bytes) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    with pytest.raises(CorruptJob, match="recursion limit"):
        decode_stored(boom, b"", what="job x")


def test_route_check_names_both_queues() -> None:
    env = make_envelope("a")
    with pytest.raises(CorruptJob, match="names queue 'a' but it is stored in queue 'b'"):
        check_route(env, queue="b", what="job x")
    with pytest.raises(CorruptJob, match="differs from the id"):
        check_route(env, job_id=make_envelope().id, what="job x")


def test_worker_fails_a_job_whose_arguments_are_too_deep_and_runs_the_rest(app: Oddjob) -> None:
    tree: Any = {}
    for _ in range(3000):
        tree = {"child": tree}
    name = f"{takes_a_tree.__module__}:takes_a_tree"
    deep = make_envelope(target=name, arguments={"payload": tree})
    app.storage.add([deep])
    good = [app.enqueue(targets.echo, f"g{i}", i) for i in range(5)]
    app.run_worker(burst=True, handle_signals=False, workers=2)
    assert all(app.get(g).state is JobState.SUCCEEDED for g in good)
    record = app.get(deep.id)
    assert record.state is JobState.FAILED
    assert "recursion limit" in record.envelope.errors[-1].message


def test_a_sync_job_that_overran_its_timeout_is_said(
    app: Oddjob, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 8: a plain sync job past its timeout was recorded as succeeded without a word."""
    job_id = app.options(timeout=0.05).enqueue(targets.sleep_for, "overrun", 0.3)
    with caplog.at_level(logging.WARNING, logger="oddjob.worker"):
        app.run_worker(burst=True, handle_signals=False, workers=1)
    assert app.get(job_id).state is JobState.SUCCEEDED  # it did return
    assert any("past its timeout" in r.getMessage() for r in caplog.records)
