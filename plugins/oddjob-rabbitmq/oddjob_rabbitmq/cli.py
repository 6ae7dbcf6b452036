"""``oddjob rabbitmq ...``: declare the topology, show counts, manage failed jobs.

Self-contained: options come from the oddjob configuration when run under the
``oddjob`` CLI (``[tool.oddjob.rabbitmq]``, ``ODDJOB_RABBITMQ__URL``...), and
``--url`` / ``--prefix`` override them. Queues default to the configured ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import click
import msgspec

from oddjob_core.cli import backend_options_for_cli, current_settings
from oddjob_core.errors import OddjobError
from oddjob_core.model import JobState

from .options import RabbitOptions
from .storage import RabbitStorage


def _options(ctx: click.Context, url: str | None, prefix: str | None) -> RabbitOptions:
    """The configured rabbitmq options (if any) with the command-line overrides applied."""
    return backend_options_for_cli(ctx, "rabbitmq", RabbitOptions, url=url, prefix=prefix)


def _queues(ctx: click.Context, given: Sequence[str], options: RabbitOptions) -> list[str]:
    if given:
        return list(given)
    settings = current_settings(ctx)
    names = set(options.queues)
    if settings is not None:
        names |= set(settings.queue_names())
    return sorted(names) or ["default"]


@contextmanager
def _storage(options: RabbitOptions) -> Iterator[RabbitStorage]:
    try:
        storage = RabbitStorage(options)
    except OddjobError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield storage
    except OddjobError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        storage.close()


_url = click.option(
    "--url",
    envvar="ODDJOB_RABBITMQ__URL",
    show_envvar=True,
    help="AMQP URL (default: the configured rabbitmq url).",
)
_prefix = click.option("--prefix", help="Name prefix of oddjob's queues (default 'oddjob.').")
_queue = click.option(
    "--queue", "-q", "queues", multiple=True, help="oddjob queue (repeatable; default: configured)."
)


@click.group("rabbitmq")
def rabbitmq_group() -> None:
    """RabbitMQ storage: topology, counts, failed jobs and teardown.

    \b
    What this backend can show: jobs are messages in queues, so it counts
    ready, scheduled and failed jobs per queue (`oddjob queues`, `status`),
    lists, requeues and purges failed jobs (`jobs list --state failed`,
    `failed`, `requeue`, `purge`); it cannot look up, list or cancel one waiting
    job. `teardown` removes the queues and exchanges of a prefix.
    """


@rabbitmq_group.command("declare")
@_url
@_prefix
@_queue
@click.option("--print", "print_only", is_flag=True, help="List what would be declared; no broker.")
@click.pass_context
def declare_command(
    ctx: click.Context,
    url: str | None,
    prefix: str | None,
    queues: tuple[str, ...],
    print_only: bool,
) -> None:
    """Declare work, failed and delay-ladder queues (idempotent; for locked-down brokers)."""
    options = _options(ctx, url, prefix)
    names = _queues(ctx, queues, options)
    if print_only:
        from .declaring import topology_of

        for name in names:
            t = topology_of(options, name)
            click.echo(f"queue {t.work.name} {t.work.arguments}")
            click.echo(f"queue {t.failed.name} {t.failed.arguments}")
            for q in t.delay_queues:
                click.echo(f"queue {q.name} {q.arguments}")
            for x in t.exchanges:
                click.echo(f"exchange {x} (topic)")
            for b in t.bindings:
                click.echo(f"bind {b.source} -> {b.destination} '{b.pattern}'")
        return
    with _storage(options) as storage:
        for t in storage.declare(names):
            click.echo(
                f"declared queue '{t.queue}': {t.work.name}, {t.failed.name} and "
                f"{t.levels} delay levels (up to {t.max_delay} s per hop) on "
                f"{_where(storage)}"
            )


def _where(storage: RabbitStorage) -> str:
    from .urls import redact

    return redact(storage.options.url)


@rabbitmq_group.command("status")
@_url
@_prefix
@_queue
@click.pass_context
def status_command(
    ctx: click.Context, url: str | None, prefix: str | None, queues: tuple[str, ...]
) -> None:
    """Show ready, scheduled (delay ladder) and failed jobs per queue."""
    options = _options(ctx, url, prefix)
    with _storage(options) as storage:
        click.echo(f"RabbitMQ {storage.server_version} at {_where(storage)}")
        for name in _queues(ctx, queues, options):
            c = storage.counts(name)[name]
            click.echo(
                f"{name}: ready {c[JobState.READY]}, scheduled {c[JobState.SCHEDULED]}, "
                f"failed {c[JobState.FAILED]}"
            )


@rabbitmq_group.command("failed")
@_url
@_prefix
@_queue
@click.option("--limit", default=50, show_default=True, help="Show at most this many jobs.")
@click.pass_context
def failed_command(
    ctx: click.Context, url: str | None, prefix: str | None, queues: tuple[str, ...], limit: int
) -> None:
    """List failed jobs, newest first, with their last error."""
    options = _options(ctx, url, prefix)
    with _storage(options) as storage:
        for name in _queues(ctx, queues, options):
            for record in storage.failed_jobs(name)[:limit]:
                env = record.envelope
                last = env.errors[-1] if env.errors else None
                why = f"{last.type}: {last.message}" if last else "(no error recorded)"
                click.echo(f"{env.id} {name} {env.target} attempts={env.attempts} {why}")


@rabbitmq_group.command("requeue")
@_url
@_prefix
@_queue
@click.argument("job_id", type=click.UUID)
@click.pass_context
def requeue_command(
    ctx: click.Context,
    url: str | None,
    prefix: str | None,
    queues: tuple[str, ...],
    job_id: uuid.UUID,
) -> None:
    """Move a failed job back to its queue with a fresh retry budget."""
    options = _options(ctx, url, prefix)
    names = _queues(ctx, queues, options)
    options = msgspec.structs.replace(options, queues=tuple(names))
    with _storage(options) as storage:
        if not storage.requeue(job_id):
            raise click.ClickException(
                f"job {job_id} is not in the failed queue of {', '.join(names)}; "
                "pass --queue for the queue it ran in"
            )
        click.echo(f"requeued job {job_id}")


@rabbitmq_group.command("purge")
@_url
@_prefix
@_queue
@click.option("--waiting", is_flag=True, help="Purge waiting jobs (work queue and delay ladder).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge_command(
    ctx: click.Context,
    url: str | None,
    prefix: str | None,
    queues: tuple[str, ...],
    waiting: bool,
    yes: bool,
) -> None:
    """Delete the failed jobs of queues (with --waiting: every job waiting in them)."""
    options = _options(ctx, url, prefix)
    names = _queues(ctx, queues, options)
    what = "waiting" if waiting else "failed"
    if not yes:
        click.confirm(f"delete every {what} job of {', '.join(names)}?", abort=True)
    with _storage(options) as storage:
        for name in names:
            if waiting:
                n = storage.purge_waiting(name)
            else:
                n = storage.purge([JobState.FAILED], queue=name)
            click.echo(f"{name}: deleted {n} {what} job(s)")


@rabbitmq_group.command("teardown")
@_url
@_prefix
@_queue
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def teardown_command(
    ctx: click.Context, url: str | None, prefix: str | None, queues: tuple[str, ...], yes: bool
) -> None:
    """Delete every queue and exchange oddjob declared for queues (their jobs too).

    Each oddjob queue is a work queue, a failed queue, a delay ladder of ~20
    queues and their exchanges on the broker, all named with the prefix. This
    removes them for the given (default: configured) queues of that prefix.
    """
    options = _options(ctx, url, prefix)
    names = _queues(ctx, queues, options)
    if not yes:
        click.confirm(
            f"delete the queues and exchanges of {', '.join(names)} (prefix "
            f"'{options.prefix}'), with every job in them?",
            abort=True,
        )
    with _storage(options) as storage:
        storage.delete_topology(names)
        for name in names:
            t = storage.topology(name)
            click.echo(
                f"{name}: deleted {2 + len(t.delay_queues)} queue(s) and {len(t.exchanges)} "
                f"exchange(s) named '{options.prefix}...' on {_where(storage)}"
            )
