"""What every CLI command shares: the plugin registry and a lazily built ``Oddjob`` app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click

from ..app import Oddjob
from ..plugins import PluginRegistry


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
