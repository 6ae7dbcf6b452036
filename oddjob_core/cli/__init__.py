"""The ``oddjob`` command line: worker, enqueue, jobs, queues, plugins, plus plugin commands."""

from __future__ import annotations

import sys

import click

from ..errors import OddjobError
from ..plugins import PluginRegistry
from .doctor import doctor_command
from .jobs import enqueue_command, jobs_group, queues_command
from .plugins import plugins_command
from .schedules import schedules_group
from .state import CliState, backend_options_for_cli, current_app, current_settings
from .version import version_option
from .worker import worker_command

__all__ = ["backend_options_for_cli", "build_cli", "current_app", "current_settings", "main"]


def build_cli(registry: PluginRegistry | None = None) -> click.Group:
    """The root group with built-in commands and every plugin's ``oddjob_cli`` additions."""
    registry = registry or PluginRegistry()

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option(
        "--config",
        "-c",
        type=click.Path(dir_okay=False),
        envvar="ODDJOB_CONFIG",
        help="oddjob.toml or pyproject.toml to read (default: ./oddjob.toml, then "
        "[tool.oddjob] in ./pyproject.toml).",
    )
    @click.option("--storage", help="Storage backend name, overriding the configuration.")
    @click.pass_context
    def main(ctx: click.Context, config: str | None, storage: str | None) -> None:
        """oddjob: reliable background jobs on the storage you already run."""
        ctx.obj = CliState(
            registry=registry, config=config, overrides={"storage": storage} if storage else {}
        )
        ctx.call_on_close(ctx.obj.close)

    main.params.append(version_option(registry))
    for command in (
        worker_command,
        enqueue_command,
        jobs_group,
        queues_command,
        plugins_command,
        doctor_command,
    ):
        main.add_command(command)
    main.add_command(schedules_group)
    registry.hooks.cli(main)
    return main


def main() -> None:
    """Console-script entry point: user errors print one clear line and exit 1."""
    try:
        build_cli()(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OddjobError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
