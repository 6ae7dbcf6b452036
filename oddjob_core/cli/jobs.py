"""``oddjob enqueue``, ``oddjob jobs ...`` and ``oddjob queues``: management from the shell."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click
import msgspec

from ..app import Oddjob
from ..errors import UnsupportedOperation, UntrustedTargetWarning
from ..model import AttemptError, JobState
from ..storage import management_of, queue_management_of
from .output import JOB_HEADERS, echo_json, job_row, parse_duration, record_json, table
from .state import CliState, pass_state

STATES = [s.value for s in JobState]


def _json_arg(text: str | None, kind: type, what: str) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, kind):
        raise click.BadParameter(f"{what} must be a JSON {'array' if kind is list else 'object'}")
    return value


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"'{text}' is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        raise click.BadParameter(f"'{text}' has no time zone; add Z or +02:00")
    return moment


def what_it_can(app: Oddjob) -> str:
    """The management commands this storage supports, for an "it cannot do that" message."""
    storage = app.storage
    can = []
    if queue_management_of(storage) is not None:
        can += ["`oddjob queues` (jobs per queue and state)", "`oddjob jobs retry ID`"]
        can.append("`oddjob jobs purge`")
    if management_of(storage) is not None:
        can += ["`oddjob jobs list`", "`oddjob jobs show ID`", "`oddjob jobs cancel ID`"]
    root = click.get_current_context().find_root().command
    if isinstance(root, click.Group) and storage.name in root.commands:
        can.append(f"its own commands: `oddjob {storage.name} --help`")
    listed = "; ".join(can) or "nothing beyond enqueue and running workers"
    return f"what storage '{storage.name}' can do from the shell: {listed}"


@contextmanager
def plainly(app: Oddjob) -> Iterator[None]:
    """Turn "this backend cannot" into one sentence that also says what it can."""
    try:
        yield
    except UnsupportedOperation as exc:
        raise click.ClickException(f"{exc}; {what_it_can(app)}") from exc


@click.command("enqueue")
@click.argument("target")
@click.option(
    "--args", "args_json", help="Positional arguments as a JSON array, e.g. '[42, \"x\"]'."
)
@click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object.")
@click.option("--queue", "-q", help="Queue (default: the target's, else the default queue).")
@click.option("--delay", help="Run no sooner than this from now: 30s, 15m, 3d.")
@click.option("--run-at", help="Run no sooner than this ISO 8601 time (with zone).")
@click.option("--retries", type=click.IntRange(0), help="Maximum retries after the first attempt.")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_state
def enqueue_command(
    state: CliState,
    target: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    delay: str | None,
    run_at: str | None,
    retries: int | None,
    priority: int | None,
    as_json: bool,
) -> None:
    """Enqueue a call of TARGET (package.module:function)."""
    app = state.app()
    retry = None
    if retries is not None:
        retry = msgspec.structs.replace(app.settings.retry, max_retries=retries)
    options = app.options(
        queue=queue,
        delay=parse_duration(delay) if delay else None,
        run_at=_when(run_at),
        priority=priority,
        retry=retry,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UntrustedTargetWarning)
        job_id = options.enqueue(
            target,
            *_json_arg(args_json, list, "--args"),
            **_json_arg(kwargs_json, dict, "--kwargs"),
        )
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    if as_json:
        echo_json(record_json(app.get(job_id)) if management_of(app.storage) else {"id": job_id})
    else:
        click.echo(str(job_id))


@click.group("jobs")
def jobs_group() -> None:
    """Inspect and manage stored jobs."""


@jobs_group.command("list")
@click.option("--queue", "-q", help="Only jobs of this queue.")
@click.option(
    "--state",
    "-s",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    help="Only jobs in this state (repeatable).",
)
@click.option(
    "--target",
    "-t",
    help="Only jobs of this target (module:function), or of a module prefix (myapp.jobs).",
)
@click.option("--since", help="Created within this long ago (e.g. 2h), or after an ISO time.")
@click.option("--until", help="Created before this ISO time.")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="Show at most this many jobs.",
)
@click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many jobs first.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@pass_state
def list_command(
    state: CliState,
    queue: str | None,
    states: tuple[str, ...],
    target: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    from ..clock import utcnow

    after = None
    if since:
        after = _when(since) if any(c in since for c in "T-:") else utcnow() - parse_duration(since)
    app = state.app()
    with plainly(app):
        page = app.search(
            queue=queue,
            states=states or None,
            target=target,
            created_after=after,
            created_before=_when(until),
            limit=limit,
            offset=offset,
        )
    if as_json:
        echo_json({**msgspec.to_builtins(page), "jobs": [record_json(r) for r in page.jobs]})
        return
    table(JOB_HEADERS, [job_row(r) for r in page.jobs])
    click.echo(
        f"{len(page.jobs)} of {page.total} job(s)"
        + (f"; next page: --offset {offset + limit}" if offset + limit < page.total else "")
    )


@jobs_group.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_state
def show_command(state: CliState, job_id: str, as_json: bool) -> None:
    """Show one job: arguments, attempts, errors, result."""
    app = state.app()
    with plainly(app):
        record = app.get(job_id)
    if as_json:
        echo_json(record_json(record))
        return
    env = record.envelope
    for label, value in [
        ("id", env.id),
        ("target", env.target),
        ("queue", env.queue),
        ("state", record.state.value),
        ("attempts", f"{env.attempts} (max retries {env.retry.max_retries})"),
        ("priority", env.priority),
        ("run at", env.run_at.isoformat()),
        ("created", env.created_at.isoformat()),
        ("updated", record.updated_at.isoformat()),
        (
            "lease",
            f"{record.lease_owner} until {record.lease_expires_at.isoformat()}"
            if record.lease_expires_at
            else "-",
        ),
    ]:
        click.echo(f"{label:>10}: {value}")
    click.echo(f"{'arguments':>10}: {json.dumps(env.arguments, indent=2)}")
    if record.state is JobState.SUCCEEDED:
        click.echo(f"{'result':>10}: {json.dumps(record.result)}")
    for error, (number, run) in zip(env.errors, attempt_numbers(env.errors), strict=True):
        after = f" (attempt {error.attempt} after requeue {run - 1})" if run > 1 else ""
        click.echo(
            f"\nattempt {number}{after} at {error.at.isoformat()}: {error.type}: {error.message}"
        )
        if error.traceback:
            click.echo(error.traceback.rstrip())


def attempt_numbers(errors: Sequence[AttemptError]) -> list[tuple[int, int]]:
    """(number across requeues, run) per error: a requeue restarts the stored attempt at 1."""
    out: list[tuple[int, int]] = []
    run, base, last = 1, 0, 0
    for error in errors:
        if error.attempt <= last:  # attempts restarted: the job was requeued
            run += 1
            base += last
        last = error.attempt
        out.append((base + error.attempt, run))
    return out


@jobs_group.command("retry")
@click.argument("job_id")
@pass_state
def retry_command(state: CliState, job_id: str) -> None:
    """Requeue a failed (or cancelled / succeeded) job with a fresh retry budget."""
    _change(state, job_id, "requeued", "is waiting or running; only finished jobs can be requeued")


@jobs_group.command("cancel")
@click.argument("job_id")
@pass_state
def cancel_command(state: CliState, job_id: str) -> None:
    """Cancel a job that has not started yet."""
    _change(
        state,
        job_id,
        "cancelled",
        "is running or finished (or unknown); only waiting jobs can be cancelled",
    )


@jobs_group.command("delete")
@click.argument("job_id")
@pass_state
def delete_command(state: CliState, job_id: str) -> None:
    """Remove one waiting or finished job for good (a running job is refused)."""
    _change(state, job_id, "deleted", "is running (or unknown); delete it once it finished")


def _change(state: CliState, job_id: str, done: str, refused: str) -> None:
    """Requeue, cancel or delete one job (a unique id prefix is enough); say what happened."""
    app = state.app()
    with plainly(app):
        full = app.job_id(job_id)
        action = {"requeued": app.requeue, "cancelled": app.cancel, "deleted": app.delete}[done]
        changed = action(full)
    if not changed:
        raise click.ClickException(f"job {full} {refused}")
    click.echo(f"{done} {full}")


@jobs_group.command("purge")
@click.option(
    "--state",
    "-s",
    "states",
    multiple=True,
    required=True,
    type=click.Choice(["succeeded", "failed", "cancelled"]),
    help="Delete finished jobs in this state (repeatable, required).",
)
@click.option("--older-than", help="Only jobs finished longer ago than this (e.g. 7d).")
@click.option("--queue", "-q", help="Only jobs of this queue.")
@click.option("--json", "as_json", is_flag=True, help="Print the count as JSON.")
@pass_state
def purge_command(
    state: CliState,
    states: tuple[str, ...],
    older_than: str | None,
    queue: str | None,
    as_json: bool,
) -> None:
    """Delete finished jobs."""
    app = state.app()
    with plainly(app):
        removed = app.purge(states, parse_duration(older_than) if older_than else None, queue)
    if as_json:
        echo_json({"purged": removed})
    else:
        click.echo(f"purged {removed} job(s)")


@click.command("queues")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_state
def queues_command(state: CliState, as_json: bool) -> None:
    """Jobs per queue and state."""
    app = state.app()
    with plainly(app):
        counts = app.counts()
    if as_json:
        echo_json({q: {s.value: n for s, n in per.items()} for q, per in counts.items()})
        return
    table(
        ["queue", *STATES],
        [[q, *(per.get(JobState(s), 0) for s in STATES)] for q, per in sorted(counts.items())],
    )
