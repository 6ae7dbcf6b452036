"""Which callables may run as jobs, how a target string is named and resolved, and ``@job``.

A worker runs only targets it was told to trust: functions registered with
``@job`` (their modules listed in ``imports``) or under an ``allowed_prefixes``
module prefix. Any other target, say ``os:system``, is refused without being
imported.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, overload

from .arguments import ArgumentPlan
from .errors import EnqueueError, TargetMissing, TargetNotAllowed
from .model import RetryPolicy
from .poison import check_queue_name

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class JobDefaults:
    """Per-function defaults set with ``@job``; explicit enqueue options win."""

    queue: str | None = None
    retry: RetryPolicy | None = None
    timeout: float | None = None
    priority: int | None = None


@dataclass(frozen=True)
class Target:
    """A resolved target: the function, how it is called, and its argument plan."""

    name: str
    function: Callable[..., Any]
    owner: type | None  # set when the target is a method needing an instance
    plan: ArgumentPlan
    defaults: JobDefaults
    is_async: bool


_registry: dict[str, tuple[Callable[..., Any], JobDefaults]] = {}
_registry_lock = threading.Lock()


def _owner_class(fn: Callable[..., Any]) -> type | None:
    """The module-level class whose plain method ``fn`` is, or None for a function."""
    parts = fn.__qualname__.split(".")
    if len(parts) < 2:
        return None
    module = inspect.getmodule(fn)
    obj: Any = module
    for part in parts[:-1]:
        obj = getattr(obj, part, None)
    if not isinstance(obj, type):
        return None
    static = inspect.getattr_static(obj, parts[-1], None)
    if isinstance(static, (staticmethod, classmethod)):
        return None
    return obj


def target_name(fn: Callable[..., Any]) -> str:
    """``"module:qualname"`` for a module-level function or a method of a module-level class."""
    if inspect.ismethod(fn):
        raise EnqueueError(
            f"{fn.__qualname__} is a bound method; enqueue the unbound "
            f"{type(fn.__self__).__qualname__}.{fn.__name__} instead — the worker gets the "
            "instance from the oddjob_resolve_instance hook"
        )
    name = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if not callable(fn) or not name or not module:
        raise EnqueueError(f"{fn!r} is not a function; a job target is a module-level function")
    if "<lambda>" in name or "<locals>" in name:
        raise EnqueueError(
            f"{module}:{name} is a lambda or nested function, which a worker cannot import; "
            "define the job as a module-level function"
        )
    if module == "__main__":
        raise EnqueueError(
            f"{name} is defined in __main__, which a worker process cannot import; "
            "move it into a module and import it from there"
        )
    return f"{module}:{name}"


@overload
def job(fn: F, /) -> F: ...
@overload
def job(
    *,
    queue: str | None = ...,
    retry: RetryPolicy | None = ...,
    timeout: float | timedelta | None = ...,
    priority: int | None = ...,
) -> Callable[[F], F]: ...


def job(
    fn: F | None = None,
    /,
    *,
    queue: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    priority: int | None = None,
) -> F | Callable[[F], F]:
    """Register a function (or method) as a trusted job target, with optional defaults.

    The function is returned unchanged, so calling it directly still works.
    """
    if queue is not None:
        try:
            check_queue_name(queue)
        except ValueError as exc:
            raise EnqueueError(str(exc)) from None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if seconds is not None and seconds <= 0:
        raise EnqueueError(f"timeout must be > 0 seconds, got {seconds}")
    defaults = JobDefaults(queue=queue, retry=retry, timeout=seconds, priority=priority)

    def register(func: F) -> F:
        name = target_name(func)
        with _registry_lock:
            _registry[name] = (func, defaults)
        return func

    return register(fn) if fn is not None else register


def registered_names() -> list[str]:
    """Every target registered with ``@job`` in this process so far."""
    with _registry_lock:
        return sorted(_registry)


def _is_private(qualname: str) -> bool:
    return any(part.startswith("_") for part in qualname.split("."))


def is_unregistered_private(target: str) -> bool:
    """True for ``module:_name`` (any private part) not registered with ``@job``: never run."""
    return target not in _registry and _is_private(target.partition(":")[2])


def _under(module: str, prefixes: Sequence[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


class TargetResolver:
    """Resolves stored target strings to callables, refusing untrusted ones; caches per name."""

    def __init__(self, allowed_prefixes: list[str] | tuple[str, ...] = ()) -> None:
        for prefix in allowed_prefixes:
            if not prefix or not prefix.strip("."):
                raise ValueError(
                    "allowed_prefixes contains an empty prefix, which would trust every module; "
                    "list your own packages, e.g. allowed_prefixes = ['myapp.jobs']"
                )
        self._prefixes = tuple(p.rstrip(".") for p in allowed_prefixes)
        self._cache: dict[str, Target] = {}
        self._by_function: dict[Callable[..., Any], Target] = {}  # enqueue's fast path
        self._lock = threading.Lock()

    def is_trusted_name(self, target: str) -> bool:
        """True if the target is registered or under a trusted prefix (checked before importing).

        A private name (a part starting with ``_``) is trusted only when registered.
        """
        if target in _registry:
            return True
        module, _, qualname = target.partition(":")
        if _is_private(qualname):
            return False
        return _under(module, self._prefixes)

    def refusal(self, target: str) -> str | None:
        """Why a worker with this trust would not run ``target`` (the rule ``resolve`` applies).

        None when it would. Checked at enqueue, so an untrusted target fails in
        the producer, not later in a worker.
        """
        if self.is_trusted_name(target):
            return None
        qualname = target.partition(":")[2]
        if _is_private(qualname):
            return (
                f"'{qualname}' is a private name (starts with '_'), which workers never run "
                "unless registered with @job; make it public and register it"
            )
        return (
            "it is neither a @job function of a module listed in `imports` nor under "
            "`allowed_prefixes`; register it with @job and list its module in `imports`, or add "
            "its package to `allowed_prefixes`"
        )

    def resolve(self, target: str) -> Target:
        """The ``Target`` for a stored name: ``TargetNotAllowed`` / ``TargetMissing`` otherwise."""
        cached = self._cache.get(target)
        if cached is not None:
            return cached
        module_name, sep, qualname = target.partition(":")
        if not sep or not module_name or not qualname:
            raise TargetMissing(f"'{target}' is not a target name of the form 'module:function'")
        registered = _registry.get(target)
        if registered is not None:
            fn, defaults = registered
        elif self.is_trusted_name(target):
            fn, defaults = self.import_callable(module_name, qualname), JobDefaults()
        else:
            raise TargetNotAllowed(
                f"target '{target}' is not trusted by this worker: register it with @job and "
                f"list its module in `imports`, or add its package to `allowed_prefixes`"
            )
        resolved = self._build(target, fn, defaults)
        with self._lock:
            self._cache[target] = resolved
        return resolved

    def for_callable(self, fn: Callable[..., Any]) -> Target:
        """The ``Target`` for a function object given at enqueue time (no trust check there)."""
        try:
            known = self._by_function.get(fn)
        except TypeError:  # an unhashable callable: target_name explains what is wrong
            known = None
        if known is not None:
            return known
        name = target_name(fn)
        resolved = self._cache.get(name)
        if resolved is None or resolved.function is not fn:
            entry = _registry.get(name)
            defaults = entry[1] if entry is not None and entry[0] is fn else JobDefaults()
            resolved = self._build(name, fn, defaults)
        with self._lock:
            self._cache[name] = resolved
            self._by_function[fn] = resolved
        return resolved

    @staticmethod
    def import_callable(module_name: str, qualname: str) -> Callable[..., Any]:
        """Import ``module_name`` and follow ``qualname`` to a callable; ``TargetMissing`` if not."""
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise TargetMissing(
                f"module '{module_name}' of target '{module_name}:{qualname}' cannot be imported "
                f"in this worker: {exc}"
            ) from exc
        for part in qualname.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError as exc:
                raise TargetMissing(
                    f"target '{module_name}:{qualname}' not found: module '{module_name}' has no "
                    f"attribute path '{qualname}' (renamed or removed since the job was enqueued?)"
                ) from exc
        if not callable(obj):
            raise TargetMissing(f"target '{module_name}:{qualname}' is not callable")
        return obj  # type: ignore[no-any-return]

    @staticmethod
    def _build(name: str, fn: Callable[..., Any], defaults: JobDefaults) -> Target:
        owner = _owner_class(fn)
        plan = ArgumentPlan.for_callable(name, fn, skip_self=owner is not None)
        return Target(
            name=name,
            function=fn,
            owner=owner,
            plan=plan,
            defaults=defaults,
            is_async=inspect.iscoroutinefunction(fn),
        )
