"""``oddjob doctor``: the check a user runs on their own server (see oddjob_core.doctor)."""

from __future__ import annotations

import sys

import click

from ..config import load_settings
from ..doctor.run import run_doctor
from ..errors import OddjobError
from .state import CliState, pass_state


@click.command("doctor")
@click.option("--no-suite", is_flag=True, help="Skip the storage conformance suite.")
@click.option("--no-smoke", is_flag=True, help="Skip the worker smoke test.")
@click.option("-k", "select", help="Run only the suite tests matching this pytest -k expression.")
@click.option("-v", "--verbose", is_flag=True, help="List every check, not only failures.")
@pass_state
def doctor_command(
    state: CliState, no_suite: bool, no_smoke: bool, select: str | None, verbose: bool
) -> None:
    """Prove the configured storage backend: conformance suite + worker smoke test.

    Runs in private namespaces (a temporary folder, schema or name prefix per
    check) that it removes afterwards; your real queues are never touched.
    Exits 0 when every check passed, 1 otherwise.
    """
    try:
        settings = load_settings(state.config, state.overrides)
        report = run_doctor(
            settings, state.registry, suite=not no_suite, smoke=not no_smoke, select=select
        )
    except OddjobError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("\n".join(report.lines(verbose)))
    sys.stdout.flush()
    if not report.ok:
        raise SystemExit(1)
