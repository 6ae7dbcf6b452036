"""``oddjob rabbitmq ...`` through click's test runner (the group is self-contained)."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import CliRunner
from oddjob_rabbitmq import RabbitStorage
from oddjob_rabbitmq.cli import rabbitmq_group

from oddjob_core.clock import utcnow
from oddjob_core.model import AttemptError, JobState
from oddjob_core.testing import make_envelope

MakeStorage = Callable[..., RabbitStorage]
URL = "amqp://guest:guest@127.0.0.1:5672/"


def test_declare_print_needs_no_broker() -> None:
    result = CliRunner().invoke(
        rabbitmq_group, ["declare", "--print", "--prefix", "app.", "-q", "mail"]
    )
    assert result.exit_code == 0, result.output
    assert "queue app.mail {'x-queue-type': 'quorum'" in result.output
    assert "queue app.mail.failed" in result.output
    assert "queue app.mail.delay.27" in result.output
    assert "exchange app.mail.delay.00 (topic)" in result.output


def test_declare_status_failed_requeue_purge(make_storage: MakeStorage, prefix: str) -> None:
    runner = CliRunner()
    base = ["--url", URL, "--prefix", prefix, "-q", "cli"]
    result = runner.invoke(rabbitmq_group, ["declare", *base])
    assert result.exit_code == 0, result.output
    assert "declared queue 'cli'" in result.output
    assert "guest:guest" not in result.output

    storage = make_storage(declare=False)  # the CLI declared everything
    env, later = make_envelope("cli"), make_envelope("cli", delay=3600)
    storage.add([env, later])
    [claim] = storage.claim("cli", 1, 30, "w")
    storage.fail(
        claim, AttemptError(attempt=1, type="builtins.ValueError", message="bad input", at=utcnow())
    )
    result = runner.invoke(rabbitmq_group, ["status", *base])
    assert result.exit_code == 0, result.output
    assert "cli: ready 0, scheduled 1, failed 1" in result.output

    result = runner.invoke(rabbitmq_group, ["failed", *base])
    assert f"{env.id} cli" in result.output
    assert "builtins.ValueError: bad input" in result.output

    result = runner.invoke(rabbitmq_group, ["requeue", *base, str(env.id)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(rabbitmq_group, ["requeue", *base, str(env.id)])
    assert result.exit_code != 0
    assert "not in the failed queue" in result.output

    [again] = storage.claim("cli", 1, 30, "w")
    assert again.job.id == env.id
    storage.fail(again, AttemptError(attempt=1, type="x.Y", message="again", at=utcnow()))
    result = runner.invoke(rabbitmq_group, ["purge", *base], input="y\n")
    assert result.exit_code == 0, result.output
    assert "cli: deleted 1 failed job(s)" in result.output
    result = runner.invoke(rabbitmq_group, ["purge", *base, "--waiting", "--yes"])
    assert "cli: deleted 1 waiting job(s)" in result.output
    counts = storage.counts("cli")["cli"]
    assert counts == {JobState.READY: 0, JobState.SCHEDULED: 0, JobState.FAILED: 0}


def test_unreachable_broker_is_a_clean_cli_error() -> None:
    result = CliRunner().invoke(
        rabbitmq_group, ["status", "--url", "amqp://u:s3cret@127.0.0.1:1/", "-q", "x"]
    )
    assert result.exit_code == 1
    assert "cannot connect to RabbitMQ at amqp://u@127.0.0.1:1/" in result.output
    assert "s3cret" not in result.output
