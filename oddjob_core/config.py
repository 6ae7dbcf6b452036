"""Typed settings from oddjob.toml / [tool.oddjob], then ODDJOB_* variables, then code.

A bad value fails at start with its path (``queues.default.workers``). A table
named after a backend (``[tool.oddjob.postgres]``) holds that backend's options.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from .errors import ConfigError
from .model import RetryPolicy
from .poison import check_queue_name

ENV_PREFIX = "ODDJOB_"


class QueueSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One queue's worker settings."""

    workers: int = 8
    batch_size: int | None = None  # jobs per claim; default: all the room, 3 × workers - 1 queued

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


class ScheduleSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[schedules.NAME]`` table: what to run, when, and the enqueue options of its ticks.

    Exactly one of ``cron`` (five fields, in ``timezone``) or ``every`` (``"15m"``,
    ``"1h30m"``, ``"10s"`` or a number of seconds) is given.
    """

    target: str
    cron: str | None = None
    every: str | float | None = None
    timezone: str = "UTC"
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    queue: str | None = None
    priority: int | None = None
    retry: RetryPolicy | None = None
    timeout: float | None = None
    catch_up: Literal["latest", "all", "none"] = "latest"
    max_catch_up: int = 100

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of cron = '...' or every = '...'")
        if self.max_catch_up < 1:
            raise ValueError(f"max_catch_up must be >= 1, got {self.max_catch_up}")


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything oddjob reads from configuration (backend option tables live in ``backends``)."""

    storage: str = "filesystem"
    executor: str = "threads"
    imports: list[str] = []
    allowed_prefixes: list[str] = []
    default_queue: str = "default"
    queues: dict[str, QueueSettings] = {}
    lease: float = 30.0
    poll_interval: float = 1.0
    shutdown_timeout: float = 30.0
    retry: RetryPolicy = RetryPolicy()
    log_format: Literal["text", "json"] = "text"  # worker log lines; json: one object per line
    schedules: dict[str, ScheduleSettings] = {}
    backends: dict[str, dict[str, Any]] = {}

    def __post_init__(self) -> None:
        for name, value, low in (
            ("lease", self.lease, 1.0),
            ("poll_interval", self.poll_interval, 0.001),
            ("shutdown_timeout", self.shutdown_timeout, 0.0),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        try:
            check_queue_name(self.default_queue)
        except ValueError as exc:
            raise ValueError(f"default_queue: {exc}") from None

    def queue(self, name: str) -> QueueSettings:
        """Settings of queue ``name`` (defaults when it has no table)."""
        return self.queues.get(name) or QueueSettings()

    def queue_names(self) -> list[str]:
        """Configured queues, or just the default queue."""
        return list(self.queues) or [self.default_queue]


_FIELDS = set(Settings.__struct_fields__) - {"backends"}


def find_config_file(start: Path | None = None) -> Path | None:
    """``$ODDJOB_CONFIG``, else ``oddjob.toml`` or a ``pyproject.toml`` with [tool.oddjob] here."""
    explicit = os.environ.get(ENV_PREFIX + "CONFIG")
    if explicit:
        return Path(explicit)
    here = start or Path.cwd()
    if (here / "oddjob.toml").is_file():
        return here / "oddjob.toml"
    pyproject = here / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            return None
        if "oddjob" in data.get("tool", {}):
            return pyproject
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    """The oddjob table of a TOML file (whole file for oddjob.toml, [tool.oddjob] in pyproject)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("oddjob", {})
        return dict(table) if isinstance(table, dict) else {}
    tool = data.get("tool")
    if isinstance(tool, dict) and "oddjob" in tool:
        raise ConfigError(
            f"{path} has a [tool.oddjob] table, which is for pyproject.toml; in {path.name} put "
            "the settings at the top level (storage = ..., [postgres], ...) without the "
            "[tool.oddjob] prefix"
        )
    return data


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'filesystem'?"`` for the nearest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _semi(text: str) -> str:
    return text or ";"


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``ODDJOB_QUEUES__MAIL__WORKERS=4`` → ``{"queues": {"mail": {"workers": 4}}}``.

    Values are parsed as JSON when they can be (numbers, booleans, lists), else
    kept as strings. Variables naming no setting or backend table are ignored.
    """
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__")]
        if not all(path) or (len(path) == 1 and path[0] not in _FIELDS):
            continue
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[path[-1]] = value
    return out


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; nested tables merge, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def load_settings(
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Layer file, environment and code; validate; name the source and path of a bad value."""
    path = Path(config) if config is not None else find_config_file()
    raw = read_config_file(path) if path is not None else {}
    raw = deep_merge(raw, env_overrides(environ))
    raw = deep_merge(raw, overrides or {})
    return settings_from_dict(raw, source=str(path) if path else "defaults")


def settings_from_dict(raw: Mapping[str, Any], source: str = "code") -> Settings:
    """Validate a merged settings dict; tables that are not settings are backend options."""
    plain: dict[str, Any] = {}
    backends: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if key in _FIELDS:
            plain[key] = value
        elif isinstance(value, Mapping):
            backends[key] = dict(value)
        else:
            raise ConfigError(
                f"unknown setting '{key}' (from {source}){_semi(did_you_mean(key, _FIELDS))} known settings: "
                f"{', '.join(sorted(_FIELDS))}; backend options go in a table named after the "
                "backend, e.g. [tool.oddjob.postgres]"
            )
    plain["backends"] = backends
    retry = plain.get("retry")
    if isinstance(retry, Mapping):  # RetryPolicy is part of stored jobs: it tolerates unknown keys
        for key in retry:
            if key not in RetryPolicy.__struct_fields__:
                raise ConfigError(
                    f"unknown setting 'retry.{key}' (from {source})"
                    f"{_semi(did_you_mean(key, RetryPolicy.__struct_fields__))} known: "
                    f"{', '.join(RetryPolicy.__struct_fields__)}"
                )
    # tables of named tables are validated one by one: msgspec paths hide dict keys
    for field, kind in (("queues", QueueSettings), ("schedules", ScheduleSettings)):
        tables = plain.get(field)
        if not isinstance(tables, Mapping):
            continue
        for name, table in tables.items():
            try:
                msgspec.convert(table, kind, strict=False)
            except msgspec.ValidationError as exc:
                known = getattr(kind, "__struct_fields__", ())
                described = _describe(exc, prefix=f"{field}.{name}", fields=known)
                raise ConfigError(f"bad config value {described} (from {source})") from exc
    try:
        settings = msgspec.convert(plain, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"bad config value {_describe(exc)} (from {source})") from exc
    for name in settings.queues:
        try:
            check_queue_name(name)
        except ValueError as exc:
            raise ConfigError(f"bad config value at queues: {exc} (from {source})") from exc
    return settings


def backend_options(settings: Settings, name: str, options_type: type | None) -> Any:
    """Validate the ``[<name>]`` table into the backend's options Struct."""
    # environment variables cannot spell '-': ODDJOB_EXAMPLE_SQLITE__PATH sets [example-sqlite]
    table = settings.backends.get(name) or settings.backends.get(name.replace("-", "_"), {})
    if options_type is None:
        if table:
            raise ConfigError(
                f"backend '{name}' takes no options, but [{name}] sets {sorted(table)}"
            )
        return None
    try:
        return msgspec.convert(table, options_type, strict=False)
    except msgspec.ValidationError as exc:
        known = getattr(options_type, "__struct_fields__", ())
        raise ConfigError(f"bad config value {_describe(exc, prefix=name, fields=known)}") from exc


def _describe(exc: msgspec.ValidationError, prefix: str = "", fields: Iterable[str] = ()) -> str:
    """Turn msgspec's "... - at `$.queues.x.workers`" into "at queues.x.workers: ..."."""
    text = str(exc)
    unknown = re.search(r"unknown field `([^`]*)`", text)
    if unknown is not None and fields:
        text = text.replace(" - at `", f"{did_you_mean(unknown.group(1), fields)} - at `", 1)
        if " - at `" not in text:
            text += did_you_mean(unknown.group(1), fields)
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        return f"at {prefix or 'top level'}: {text}"
    path = where.rstrip("`").removeprefix("$").lstrip(".")
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    full = ".".join(p for p in (prefix, path) if p)
    return f"at {full or 'top level'}: {message}"
