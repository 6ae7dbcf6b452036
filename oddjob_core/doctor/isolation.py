"""A private namespace for doctor: the configured options, pointed somewhere no real job lives.

The options Struct's own fields say where a backend keeps its jobs, by the
names every backend here uses: ``path`` (a folder or a file: a new temporary
folder), ``schema`` (a new schema), ``prefix`` / ``table_prefix`` (a new
name prefix). A backend with none of them cannot be isolated, and doctor
refuses to run on it rather than touch real queues. What a temporary folder
holds is removed by doctor; a schema or a prefix by the storage itself,
through the optional ``DoctorSupport`` interface.
"""

from __future__ import annotations

import abc
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from ..errors import ConfigError
from ..storage import Storage


class DoctorSupport(abc.ABC):
    """Optional storage interface for ``oddjob doctor`` (``class MyStorage(Storage, DoctorSupport)``)."""

    #: option values the conformance suite needs on this backend (its own test suite uses
    #: them too), e.g. RabbitMQ's ``prefetch``: applied to the suite's namespaces only
    suite_options: ClassVar[dict[str, Any]] = {}
    #: suite tests doctor does not run on this backend, name -> why (shown in the report): ones
    #: the backend replaces with its own version in its own tests, and known limitations
    suite_skips: ClassVar[dict[str, str]] = {}

    @abc.abstractmethod
    def drop_namespace(self) -> None:
        """Delete everything this instance created in its namespace (schema, queues, tables).

        Called on every instance doctor made, before closing it; must tolerate
        an already dropped namespace.
        """

    def adopt_namespace_of(self, other: Storage) -> None:
        """Before ``other`` (same namespace) is closed: take over what it knows of the namespace.

        Doctor closes every instance but one, then drops through that one; a backend
        whose instances each know only part of the namespace (RabbitMQ: the queues
        it declared) collects the rest here.
        """

    def server_settings(self) -> dict[str, str]:
        """The server's settings that matter to this backend (version, isolation...), for the report."""
        return {}


@dataclass
class Isolation:
    """Options naming a private namespace, and what doctor must remove afterwards."""

    options: Any
    description: str
    folder: Path | None = None
    made: list[Storage] = field(default_factory=list)
    closed: list[Storage] = field(default_factory=list)
    #: makes another instance on this namespace (set by doctor's factory)
    reopen: Callable[[], Storage] | None = None

    def cleanup(self) -> list[str]:
        """Drop and close every instance made, remove the folder; returns the problems met."""
        problems: list[str] = []
        alive = [i for i in self.made if not any(i is c for c in self.closed)]
        droppable = any(isinstance(i, DoctorSupport) for i in self.made)
        keeper: Storage | None = next(
            (i for i in reversed(alive) if isinstance(i, DoctorSupport)), None
        )
        if keeper is None and droppable and self.reopen is not None:
            try:
                keeper = self.reopen()
            except Exception as exc:
                problems.append(f"reopening {self.description} to drop it failed: {exc}")
        for instance in list(self.made):
            if instance is keeper:
                continue
            if isinstance(keeper, DoctorSupport):
                keeper.adopt_namespace_of(instance)
            if any(instance is a for a in alive):
                problems += _really_close(instance)
        if isinstance(keeper, DoctorSupport):
            try:
                keeper.drop_namespace()
            except Exception as exc:
                problems.append(f"dropping {self.description} failed: {exc}")
        if keeper is not None and not any(keeper is c for c in self.closed):
            problems += _really_close(keeper)
        if keeper is None and self.folder is None:
            problems.append(
                f"{self.description} was left behind: the backend offers no drop_namespace "
                "(oddjob_core.doctor.DoctorSupport); remove it by hand"
            )
        self.made.clear()
        self.closed.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        return problems


def _really_close(instance: Storage) -> list[str]:
    try:
        instance.close()
    except Exception as exc:
        return [f"closing a storage failed: {exc}"]
    return []


def isolate(backend_name: str, options: Any) -> Isolation:
    """``options`` with every namespace field replaced by a new private one (``ConfigError`` if none)."""
    if options is None or not isinstance(options, msgspec.Struct):
        raise ConfigError(
            f"oddjob doctor cannot isolate storage '{backend_name}': it takes no options naming "
            "where its jobs live (path, schema or prefix), so its checks would run on your real "
            "queues; doctor refuses"
        )
    token = secrets.token_hex(4)
    fields = set(options.__struct_fields__)
    changes: dict[str, Any] = {}
    folder: Path | None = None
    said: list[str] = []
    if "path" in fields:
        folder = Path(tempfile.mkdtemp(prefix=f"oddjob-doctor-{token}-"))
        changes["path"] = str(folder / "store")
        said.append(f"folder {folder}")
    if "schema" in fields:
        changes["schema"] = f"oddjob_doctor_{token}"
        said.append(f"schema {changes['schema']}")
    if "prefix" in fields:
        changes["prefix"] = f"oddjob-doctor-{token}."
        said.append(f"prefix {changes['prefix']}")
    if "table_prefix" in fields:
        changes["table_prefix"] = f"doctor_{token}_"
        said.append(f"table prefix {changes['table_prefix']}")
    if not changes:
        raise ConfigError(
            f"oddjob doctor cannot isolate storage '{backend_name}': its options have no "
            "path, schema, prefix or table_prefix field, so its checks would run on your real "
            "queues; doctor refuses"
        )
    return Isolation(
        options=msgspec.structs.replace(options, **changes),
        description=", ".join(said),
        folder=folder,
    )
