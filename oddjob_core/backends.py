"""The records plugins return to register storage and execution backends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine.executor import Executor
    from .engine.runtime import Runtime
    from .storage import Storage


@dataclass(frozen=True)
class StorageBackend:
    """A storage backend a plugin offers.

    ``options`` is a msgspec Struct type for the backend's table in the config
    (``[tool.oddjob.<name>]``); the core validates the table into it and passes
    the instance to ``factory`` (a missing table gives the Struct's defaults, so
    the factory never sees None). ``options=None`` means the backend takes no
    options and its factory is passed None.
    """

    name: str
    factory: Callable[[Any], Storage]
    description: str
    options: type | None = None


@dataclass(frozen=True)
class ExecutionBackend:
    """An execution backend a plugin offers; ``factory(runtime, options)`` builds it."""

    name: str
    factory: Callable[[Runtime, Any], Executor]
    description: str
    options: type | None = None
