"""``oddjob plugins``: what was found, what it offers, and what failed to load."""

from __future__ import annotations

import click

from .output import echo_json, table
from .state import CliState, pass_state


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def plugins_command(state: CliState, as_json: bool) -> None:
    """List installed plugins, their backends and load errors."""
    plugins = state.registry.plugins
    if as_json:
        echo_json([vars(p) for p in plugins])
        return
    table(
        ["plugin", "distribution", "version", "storage", "execution", "status"],
        [
            [
                p.name,
                p.distribution,
                p.version,
                ", ".join(p.storage) or "-",
                ", ".join(p.execution) or "-",
                p.error or "ok",
            ]
            for p in plugins
        ],
    )
