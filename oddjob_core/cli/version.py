"""``oddjob --version``: the core's version and every installed plugin's, one line each."""

from __future__ import annotations

import platform

import click

from ..plugins import PluginInfo, PluginRegistry
from ..version import core_version


def version_lines(registry: PluginRegistry) -> list[str]:
    """The core first, then one aligned line per plugin (built-in ones say so; broken ones say why)."""
    lines = [f"oddjob-core {core_version()} (Python {platform.python_version()})"]
    plugins: list[PluginInfo] = sorted(registry.plugins, key=lambda p: p.name)
    if not plugins:
        return [*lines, "plugins: none"]
    width = max(len(p.name) for p in plugins)
    dwidth = max(len(p.distribution) for p in plugins)
    lines.append("plugins:")
    for p in plugins:
        note = " (built into the core)" if p.distribution == "oddjob-core" else ""
        if p.error:
            note += f" (failed to load: {p.error})"
        lines.append(f"  {p.name.ljust(width)}  {p.distribution.ljust(dwidth)}  {p.version}{note}")
    return lines


def version_option(registry: PluginRegistry) -> click.Option:
    """An eager ``--version`` flag that prints :func:`version_lines` and exits 0."""

    def show(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if not value or ctx.resilient_parsing:
            return
        click.echo("\n".join(version_lines(registry)))
        ctx.exit(0)

    return click.Option(
        ["--version", "-V"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=show,
        help="Show the core's and every installed plugin's version, then exit.",
    )
