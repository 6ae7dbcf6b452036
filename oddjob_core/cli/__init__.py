"""The ``oddjob`` command line: worker, enqueue, jobs, queues, plugins, plus plugin commands."""

from __future__ import annotations

import os
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
    @click.option(
        "--no-cwd-path",
        is_flag=True,
        envvar="ODDJOB_NO_CWD_PATH",
        help="Do not put the current folder first on sys.path (it is, by default, so "
        "`myapp.jobs` imports when run from the project folder).",
    )
    @click.pass_context
    def main(
        ctx: click.Context, config: str | None, storage: str | None, no_cwd_path: bool
    ) -> None:
        """oddjob: reliable background jobs on the storage you already run.

        \b
        Exit codes: 0 done; 1 an error (configuration, target, storage, job id),
        printed as one line; 2 a usage error (unknown option, bad value);
        130 interrupted or not confirmed. `oddjob postgres status` / `sqlserver status`: 1 while
        migrations are pending.
        """
        if not no_cwd_path:
            put_cwd_on_path()
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


def put_cwd_on_path() -> None:
    """Put the current folder first on ``sys.path``, as Celery and Dramatiq do.

    A console script's ``sys.path`` starts with the script's folder, not the
    current one, so ``imports = ["myapp.jobs"]`` would not import from the
    project folder. Opt out with ``--no-cwd-path`` / ``ODDJOB_NO_CWD_PATH=1``.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def main() -> None:
    """Console-script entry point: user errors print one clear line and exit 1.

    Click runs with ``standalone_mode=False`` so our errors are caught here; the
    exit code a command asks for (``ctx.exit(1)``) comes back as the return value
    and must be passed on, or every command would exit 0.
    """
    try:
        code = build_cli()(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OddjobError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
