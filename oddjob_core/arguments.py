"""Bind a call's arguments against the target's signature, encode them, and decode them back.

Arguments are bound at enqueue time so a call that does not fit fails in the
caller, not at 3 a.m. in a worker. Each value is stored as msgspec builtins
(readable JSON) and converted back to the parameter's annotated type in the
worker: datetime, date, UUID, Decimal, bytes, Enum, dataclasses, msgspec
Structs and nested containers of them round-trip. No pickle.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from .errors import EnqueueError, PayloadError
from .poison import CorruptJob, describe

_P = inspect.Parameter
#: Values of these exact types are stored as they are: no conversion, no validation needed
#: when the annotation names the same type (or nothing).
_SCALARS = frozenset({int, str, float, bool})


@dataclass(frozen=True)
class _Param:
    name: str
    kind: inspect._ParameterKind
    hint: Any


@dataclass(frozen=True)
class ArgumentPlan:
    """A target's parameters with their resolved type hints, built once per target."""

    target: str
    signature: inspect.Signature
    params: tuple[_Param, ...]

    @functools.cached_property
    def _names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params)

    @functools.cached_property
    def _by_keyword(self) -> bool:
        """Every parameter can be passed by name: decoded calls need no ``BoundArguments``."""
        return all(p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY) for p in self.params)

    @classmethod
    def for_callable(cls, target: str, fn: Callable[..., Any], *, skip_self: bool) -> ArgumentPlan:
        """Inspect ``fn``; ``skip_self`` drops the first parameter of an unbound method."""
        signature = inspect.signature(fn)
        parameters = list(signature.parameters.values())
        if skip_self and parameters:
            parameters = parameters[1:]
            signature = signature.replace(parameters=parameters)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable forward references: fall back to no conversion
            hints = {}
        params = []
        for p in parameters:
            hint = hints.get(p.name, Any)
            if p.kind is _P.VAR_POSITIONAL:
                hint = tuple[hint, ...]  # type: ignore[valid-type]
            elif p.kind is _P.VAR_KEYWORD:
                hint = dict[str, hint]  # type: ignore[valid-type]
            params.append(_Param(p.name, p.kind, hint))
        return cls(target=target, signature=signature, params=tuple(params))

    @functools.cached_property
    def _positional(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.kind is _P.POSITIONAL_OR_KEYWORD)

    @functools.cached_property
    def _required(self) -> frozenset[str]:
        return frozenset(
            p.name
            for p in self.signature.parameters.values()
            if p.default is inspect.Parameter.empty
        )

    @functools.cached_property
    def _hints(self) -> dict[str, Any]:
        return {p.name: p.hint for p in self.params}

    def _bind_simple(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """``signature.bind`` for the common shapes, several times faster; None: use ``bind``."""
        if not self._by_keyword or len(args) > len(self._positional):
            return None
        given = dict(zip(self._positional, args, strict=False))
        if kwargs:
            for name in kwargs:
                if name in given or name not in self._names:
                    return None  # bind raises the precise TypeError
            given.update(kwargs)
            given = {p.name: given[p.name] for p in self.params if p.name in given}
        return given if self._required <= given.keys() else None

    def encode(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind and encode a call; raise ``EnqueueError`` naming the parameter at fault."""
        arguments = self._bind_simple(args, kwargs)
        if arguments is None:
            try:
                arguments = self.signature.bind(*args, **kwargs).arguments
            except TypeError as exc:
                raise EnqueueError(
                    f"arguments do not fit {self.target}{self.signature}: {exc}"
                ) from exc
        hints = self._hints
        encoded: dict[str, Any] = {}
        for name, value in arguments.items():
            kind = type(value)
            if kind in _SCALARS and (hints[name] is kind or hints[name] is Any):
                encoded[name] = value
                continue
            if kind is float and hints[name] is Decimal:
                # exactly the number written (repr is the shortest that round-trips), stored
                # as Decimal stores it: a string, never a binary float
                value = Decimal(repr(value))
            try:
                raw = msgspec.to_builtins(value)
            except Exception as exc:  # TypeError, EncodeError, RecursionError (deep nesting)
                raise EnqueueError(
                    f"argument '{name}' of {self.target} cannot be stored: {exc} "
                    f"(value of type {type(value).__module__}.{type(value).__qualname__}); "
                    "use JSON-friendly values, datetime, date, UUID, Decimal, bytes, Enum, "
                    "dataclasses or msgspec Structs"
                ) from exc
            hint = hints[name]
            if hint is not Any:
                try:
                    msgspec.convert(raw, hint, strict=False)
                except (msgspec.ValidationError, TypeError) as exc:
                    raise EnqueueError(
                        f"argument '{name}' of {self.target} does not match its annotation "
                        f"{_type_name(hint)}: {exc}"
                    ) from exc
            encoded[name] = raw
        return encoded

    def decode(self, stored: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Convert stored arguments back to annotated types; ``PayloadError`` if they no longer fit."""
        unknown = stored.keys() - self._names
        if unknown:
            raise PayloadError(
                f"stored job passes {', '.join(sorted(unknown))} but {self.target}"
                f"{self.signature} has no such parameter (the function changed since enqueue)"
            )
        values: dict[str, Any] = {}
        for p in self.params:
            if p.name not in stored:
                continue
            raw = stored[p.name]
            if type(raw) is p.hint:  # already what the annotation asks for (int, str, ...)
                values[p.name] = raw
                continue
            try:
                values[p.name] = msgspec.convert(raw, p.hint, strict=False)
            except (msgspec.ValidationError, TypeError) as exc:
                raise PayloadError(
                    f"stored argument '{p.name}' of {self.target} no longer fits "
                    f"{_type_name(p.hint)}: {exc}"
                ) from exc
            except Exception as exc:  # RecursionError on deep nesting, MemoryError...
                raise CorruptJob(
                    f"stored argument '{p.name}' of {self.target} cannot be decoded: "
                    f"{describe(exc)}"
                ) from exc
        if self._by_keyword:
            return (), values
        bound = inspect.BoundArguments(self.signature, values)  # type: ignore[arg-type,unused-ignore]
        return bound.args, bound.kwargs


def _type_name(hint: Any) -> str:
    return getattr(hint, "__qualname__", None) or repr(hint)
