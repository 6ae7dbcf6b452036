"""Registers the ``oddjob dashboard`` command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from oddjob_core.hookspecs import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def oddjob_cli(group: click.Group) -> None:
    """Add ``oddjob dashboard``."""
    from .cli import dashboard_command

    group.add_command(dashboard_command)
