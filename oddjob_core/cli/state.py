"""What every CLI command shares: the plugin registry and a lazily built ``Oddjob`` app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import click
import msgspec

from ..app import Oddjob
from ..config import Settings, load_settings
from ..errors import OddjobError
from ..plugins import PluginRegistry

T = TypeVar("T")


@dataclass
class CliState:
    registry: PluginRegistry
    config: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    _app: Oddjob | None = None

    def app(self, **more: Any) -> Oddjob:
        """The app for this invocation (configuration errors surface here, with their path)."""
        if self._app is None:
            self._app = Oddjob(self.config, registry=self.registry, **{**self.overrides, **more})
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()


pass_state = click.make_pass_decorator(CliState)


def current_app(ctx: click.Context | None = None, **overrides: Any) -> Oddjob:
    """The ``Oddjob`` app of the running ``oddjob`` command, for plugins' own CLI commands.

    Honours ``--config`` and ``--storage`` given to ``oddjob``; ``overrides``
    (e.g. ``storage="postgres"``) apply when the app is first built.
    """
    ctx = ctx or click.get_current_context()
    state = ctx.find_object(CliState)
    if state is None:
        return Oddjob(**overrides)
    return state.app(**overrides)


def current_settings(ctx: click.Context | None = None) -> Settings | None:
    """The settings of the running ``oddjob`` command (``--config`` honoured); None outside it."""
    ctx = ctx or click.get_current_context()
    state = ctx.find_object(CliState)
    if state is None:
        return None
    try:
        return load_settings(state.config, state.overrides)
    except OddjobError as exc:
        raise click.ClickException(str(exc)) from exc


def backend_options_for_cli(
    ctx: click.Context, name: str, options_type: type[T], **overrides: Any
) -> T:
    """A backend's configured ``[name]`` options with the command line's non-None ``overrides``.

    For plugins' own commands (``oddjob postgres migrate --dsn ...``): a bad value
    becomes a ``ClickException`` naming the option, not a traceback.
    """
    settings = current_settings(ctx)
    table: dict[str, Any] = dict(settings.backends.get(name, {})) if settings else {}
    table.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return msgspec.convert(table, options_type, strict=False)
    except msgspec.ValidationError as exc:
        raise click.ClickException(f"bad {name} option: {exc}") from exc
