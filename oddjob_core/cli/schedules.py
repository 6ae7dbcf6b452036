"""``oddjob schedules``: list, trigger, pause and resume recurring jobs."""

from __future__ import annotations

import click

from .output import echo_json, table
from .state import CliState, pass_state


@click.group("schedules")
def schedules_group() -> None:
    """Recurring jobs defined in code and in [schedules.NAME] tables."""


@schedules_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@pass_state
def list_command(state: CliState, as_json: bool) -> None:
    """Every schedule: when it runs next, its last tick and that job's state, paused or not."""
    infos = state.app().schedules.list()
    if as_json:
        echo_json(infos)
        return
    table(
        ["name", "target", "when", "timezone", "next run", "last tick", "last state", "paused"],
        [
            [
                i.name,
                i.target,
                f"cron {i.cron}" if i.cron else f"every {i.every}",
                i.timezone,
                i.next_run,
                i.last_tick,
                i.last_job_state.value if i.last_job_state else None,
                "yes" if i.paused else "no",
            ]
            for i in infos
        ],
    )


@schedules_group.command("trigger")
@click.argument("name")
@pass_state
def trigger_command(state: CliState, name: str) -> None:
    """Enqueue one extra run of NAME now."""
    job_id = state.app().schedules.trigger(name)
    click.echo(str(job_id))


@schedules_group.command("pause")
@click.argument("name")
@pass_state
def pause_command(state: CliState, name: str) -> None:
    """Stop NAME's ticks on every worker until resumed (skipped ticks are not caught up)."""
    _set_paused(state, name, paused=True)


@schedules_group.command("resume")
@click.argument("name")
@pass_state
def resume_command(state: CliState, name: str) -> None:
    """Let NAME tick again from its next tick on."""
    _set_paused(state, name, paused=False)


def _set_paused(state: CliState, name: str, *, paused: bool) -> None:
    """Pause or resume NAME (stored, so every worker obeys) and say so."""
    schedules = state.app().schedules
    (schedules.pause if paused else schedules.resume)(name)
    click.echo(f"schedule '{name}' {'paused' if paused else 'resumed'}")
