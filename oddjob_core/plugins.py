"""Plugin discovery through the ``oddjob`` entry-point group, and the typed hook facade.

Each entry point is loaded in its own try/except: a broken plugin is reported
(``oddjob plugins``) and skipped, and only fails a run that selects it.
``Hooks`` is the only code that calls ``pm.hook``.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import pluggy

from . import hookspecs
from .backends import ExecutionBackend, StorageBackend
from .errors import BackendNotFound, ConfigError, PluginConflict

if TYPE_CHECKING:
    import click

    from .engine.context import JobContext
    from .engine.executor import Executor
    from .engine.runner import Attempted, Outcome
    from .engine.runtime import Runtime
    from .errors import StorageError
    from .model import AttemptError, Claim, Envelope

log = logging.getLogger("oddjob.plugins")
GROUP = "oddjob"
_DEFAULTS = "oddjob-core-defaults"  # the core's own hook implementations, registered first
_NO_HEADERS: dict[str, str] = {}  # shared, never mutated: the common answer of ``job_headers``


@dataclass
class PluginInfo:
    """What ``oddjob plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    module: str
    storage: list[str] = field(default_factory=list)
    execution: list[str] = field(default_factory=list)
    error: str | None = None


class PluginRegistry:
    """Loads plugins once and indexes the backends they register by name."""

    def __init__(self, *, entry_points: bool = True, extra: Sequence[tuple[str, object]] = ()):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        from .engine import defaults

        self.pm.register(defaults, name=_DEFAULTS)
        self.plugins: list[PluginInfo] = []
        self._storage: dict[str, list[tuple[StorageBackend, PluginInfo]]] = {}
        self._execution: dict[str, list[tuple[ExecutionBackend, PluginInfo]]] = {}
        if entry_points:
            for ep in md.entry_points(group=GROUP):
                self._load_entry_point(ep)
        for name, plugin in extra:
            dist = getattr(plugin, "__name__", name)
            self._register(name, plugin, PluginInfo(name, dist, "", dist))
        self.hooks = Hooks(self.pm)

    def _load_entry_point(self, ep: md.EntryPoint) -> None:
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        info = PluginInfo(ep.name, dist, version, ep.value)
        if any(p.name == ep.name and p.distribution == dist for p in self.plugins):
            return  # the same distribution seen twice on sys.path
        try:
            plugin = ep.load()
        except Exception as exc:
            info.error = f"import failed: {type(exc).__name__}: {exc}"
            log.warning("oddjob plugin '%s' (%s) failed to load: %s", ep.name, dist, info.error)
            self.plugins.append(info)
            return
        self._register(ep.name, plugin, info)

    def _register(self, name: str, plugin: object, info: PluginInfo) -> None:
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            info.error = f"invalid hooks: {exc}"
            self.plugins.append(info)
            return
        try:
            for backend in _call_one(self.pm.hook.oddjob_storage_backends, plugin):
                self._storage.setdefault(backend.name, []).append((backend, info))
                info.storage.append(backend.name)
            for xbackend in _call_one(self.pm.hook.oddjob_execution_backends, plugin):
                self._execution.setdefault(xbackend.name, []).append((xbackend, info))
                info.execution.append(xbackend.name)
        except Exception as exc:
            info.error = f"registration failed: {type(exc).__name__}: {exc}"
            self.pm.unregister(plugin)
        self.plugins.append(info)

    def storage_names(self) -> list[str]:
        """Names of every storage backend that loaded."""
        return sorted(self._storage)

    def check_tables(self, tables: Iterable[str]) -> None:
        """A configuration table must name a backend or plugin: a typo is an error, not ignored."""
        known = {
            *self._storage,
            *self._execution,
            *(p.name for p in self.plugins),
            *(n for names in KNOWN_BACKENDS.values() for n in names),
        }
        shown = sorted(known)
        known |= {n.replace("-", "_") for n in known}
        for table in tables:
            if table not in known:
                hint = difflib.get_close_matches(table, shown, n=1, cutoff=0.6)
                raise ConfigError(
                    f"unknown configuration table [{table}]"
                    + (f"; did you mean [{hint[0]}]?" if hint else "")
                    + f" A table holds the options of a backend or plugin: {', '.join(shown)}"
                )

    def storage_backend(self, name: str) -> StorageBackend:
        """The storage backend called ``name``, or an error naming the installed choices and the fix."""
        backend: StorageBackend = _pick("storage", name, self._storage, self.plugins)
        return backend

    def execution_backend(self, name: str) -> ExecutionBackend:
        """The execution backend called ``name``, or an error naming the choices and the fix."""
        backend: ExecutionBackend = _pick("execution", name, self._execution, self.plugins)
        return backend


def _call_one(caller: pluggy.HookCaller, plugin: object) -> list[Any]:
    """Call one hook on one plugin only, so each backend is attributed to its plugin."""
    out: list[Any] = []
    for impl in caller.get_hookimpls():
        if impl.plugin is plugin:
            records: Any = impl.function()
            out.extend(records or ())
    return out


#: backends published as oddjob distributions: the only package names a hint may offer
KNOWN_BACKENDS: dict[str, dict[str, str]] = {
    "storage": {
        "memory": "oddjob-core",
        "filesystem": "oddjob-core",
        "postgres": "oddjob-postgres",
        "sqlserver": "oddjob-sqlserver",
        "rabbitmq": "oddjob-rabbitmq",
    },
    "execution": {
        "threads": "oddjob-core",
        "asyncio": "oddjob-asyncio",
        "processes": "oddjob-processes",
    },
}


def install_hint(kind: str, name: str, installed: Sequence[str]) -> str:
    """How to get backend ``name``: a real package, or the nearest real name; never invented."""
    known = KNOWN_BACKENDS.get(kind, {})
    if name in known:
        return f"run: pip install {known[name]}"
    close = difflib.get_close_matches(name, [*installed, *known], n=1, cutoff=0.6)
    if close:
        nearest = close[0]
        if nearest in installed:
            return f"did you mean '{nearest}'?"
        return f"did you mean '{nearest}' (pip install {known[nearest]})?"
    return (
        f"no published oddjob package provides it; known {kind} backends: "
        f"{', '.join(sorted(known))}"
    )


def _pick(
    kind: str, name: str, table: dict[str, list[tuple[Any, PluginInfo]]], plugins: list[PluginInfo]
) -> Any:
    entries = table.get(name)
    if not entries:
        broken = [p for p in plugins if p.error and p.name == name]
        installed = ", ".join(sorted(table)) or "none"
        if broken:
            raise BackendNotFound(
                f"{kind} backend '{name}' is installed but its plugin failed to load "
                f"({broken[0].distribution}: {broken[0].error}); installed and working: {installed}"
            )
        raise BackendNotFound(
            f"{kind} backend '{name}' is not installed (installed: {installed}); "
            + install_hint(kind, name, list(table))
        )
    if len(entries) > 1:
        dists = " and ".join(f"{info.distribution} {info.version}" for _, info in entries)
        raise PluginConflict(
            f"{kind} backend '{name}' is registered by {dists}; uninstall one of them"
        )
    return entries[0][0]


class Hooks:
    """Typed calls of every hook; lifecycle hooks that raise are logged, never fatal."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._hook = pm.hook

    def _notify(self, caller: pluggy.HookCaller, **kwargs: Any) -> None:
        """Call every implementation on its own: one that raises is logged, the others still run."""
        impls = caller.get_hookimpls()
        if not impls:
            return
        if any(impl.hookwrapper or impl.wrapper for impl in impls):
            try:
                caller(**kwargs)
            except Exception:
                log.exception("an oddjob %s hook implementation raised; ignoring it", caller.name)
            return
        for impl in reversed(impls):  # pluggy's own order: last registered first
            try:
                impl.function(*(kwargs[name] for name in impl.argnames))
            except Exception:
                log.exception(
                    "oddjob hook %s of plugin '%s' raised; ignoring it",
                    caller.name,
                    impl.plugin_name,
                )

    def resolve_instance(self, cls: type) -> object:
        """The instance for a method target (first non-None hook result)."""
        return self._hook.oddjob_resolve_instance(cls=cls)

    def run_job(self, context: JobContext, call: Callable[[], Any]) -> Any:
        """Run one attempt through every ``oddjob_run_job`` wrapper.

        With no implementation but the core's own (``call()``), call it directly:
        pluggy's dispatch would cost each job ~1.5 us for nothing.
        """
        impls = self._hook.oddjob_run_job.get_hookimpls()
        if len(impls) == 1 and impls[0].plugin_name == _DEFAULTS:
            return call()
        return self._hook.oddjob_run_job(context=context, call=call)

    def job_headers(self, job: Envelope) -> dict[str, str]:
        """Headers every ``oddjob_job_headers`` implementation wants stored with ``job``.

        A raising implementation is logged and skipped: metadata never stops an enqueue.
        """
        impls = self._hook.oddjob_job_headers.get_hookimpls()
        if not impls:
            return _NO_HEADERS
        headers = _NO_HEADERS  # a dict of its own only once some plugin has headers to add
        for impl in impls:
            try:
                extra = cast("dict[str, str] | None", impl.function(job))
            except Exception:
                log.exception(
                    "oddjob hook oddjob_job_headers of plugin '%s' raised; ignoring it",
                    impl.plugin_name,
                )
                continue
            if extra:
                headers = {**headers, **extra}
        return headers

    def job_enqueued(self, jobs: Sequence[Envelope]) -> None:
        self._notify(self._hook.oddjob_job_enqueued, jobs=jobs)

    def job_started(self, claim: Claim) -> None:
        self._notify(self._hook.oddjob_job_started, claim=claim)

    def job_succeeded(self, claim: Claim, result: Any, duration: float) -> None:
        self._notify(self._hook.oddjob_job_succeeded, claim=claim, result=result, duration=duration)

    def job_retrying(self, claim: Claim, error: AttemptError, run_at: datetime) -> None:
        self._notify(self._hook.oddjob_job_retrying, claim=claim, error=error, run_at=run_at)

    def job_failed(self, claim: Claim, error: AttemptError) -> None:
        self._notify(self._hook.oddjob_job_failed, claim=claim, error=error)

    def job_target_missing(self, claim: Claim, error: AttemptError) -> None:
        self._notify(self._hook.oddjob_job_target_missing, claim=claim, error=error)

    def job_lost(self, claim: Claim, error: StorageError) -> None:
        self._notify(self._hook.oddjob_job_lost, claim=claim, error=error)

    def attempts_recorded(self, attempts: Sequence[Attempted], outcomes: Sequence[Outcome]) -> None:
        self._notify(self._hook.oddjob_attempts_recorded, attempts=attempts, outcomes=outcomes)

    def worker_starting(self, runtime: Runtime, executor: Executor) -> list[object]:
        """Tell plugins a worker starts; return the plugins that asked to be left out of it."""
        out: list[object] = []
        for impl in self._hook.oddjob_worker_starting.get_hookimpls():
            try:
                kwargs = {"runtime": runtime, "executor": executor}
                if impl.function(*(kwargs[name] for name in impl.argnames)) is False:
                    out.append(impl.plugin)
            except Exception:
                log.exception(
                    "oddjob hook oddjob_worker_starting of plugin '%s' raised; ignoring it",
                    impl.plugin_name,
                )
        return out

    def queue_saturated(self, queue: str, pending: int, workers: int) -> None:
        self._notify(
            self._hook.oddjob_queue_saturated, queue=queue, pending=pending, workers=workers
        )

    def cli(self, group: click.Group) -> None:
        """Let plugins add their commands to the CLI group."""
        self._notify(self._hook.oddjob_cli, group=group)
