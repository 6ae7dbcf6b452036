"""The jobs page's filter: parsed from the query string, turned back into links and searches."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from oddjob_core.model import JobState

PAGE_SIZE = 50


@dataclass(frozen=True)
class JobFilter:
    """What the user asked for; ``problems`` lists inputs that could not be understood."""

    queue: str = ""
    state: str = ""
    target: str = ""
    arg: str = ""  # name=value, value as JSON when it parses, else a string
    after: str = ""  # datetime-local (UTC)
    before: str = ""
    offset: int = 0
    problems: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> JobFilter:
        problems: list[str] = []
        values = {k: (params.get(k) or "").strip() for k in ("queue", "state", "target", "arg")}
        values["after"] = (params.get("after") or "").strip()
        values["before"] = (params.get("before") or "").strip()
        if values["state"] and values["state"] not in {s.value for s in JobState}:
            problems.append(f"unknown state {values['state']!r}")
            values["state"] = ""
        for key in ("after", "before"):
            if values[key] and _moment(values[key]) is None:
                problems.append(f"{key}: {values[key]!r} is not a date and time")
                values[key] = ""
        if values["arg"] and "=" not in values["arg"]:
            problems.append(f"argument filter {values['arg']!r} must look like name=value")
            values["arg"] = ""
        try:
            offset = max(0, int(params.get("offset") or 0))
        except ValueError:
            offset = 0
        return cls(offset=offset, problems=tuple(problems), **values)

    def search_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Oddjob.search`` (without paging)."""
        kwargs: dict[str, Any] = {
            "queue": self.queue or None,
            "states": [self.state] if self.state else None,
            "target": self.target or None,
            "created_after": _moment(self.after),
            "created_before": _moment(self.before),
        }
        if self.arg:
            name, _, raw = self.arg.partition("=")
            try:
                value: Any = json.loads(raw)
            except ValueError:
                value = raw
            kwargs["arguments"] = {name.strip(): value}
        return kwargs

    def params(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (empty ones left out)."""
        chosen = replace(self, **changes)
        out = {
            key: str(getattr(chosen, key))
            for key in ("queue", "state", "target", "arg", "after", "before")
            if getattr(chosen, key)
        }
        if chosen.offset:
            out["offset"] = str(chosen.offset)
        return out

    def query(self, **changes: Any) -> str:
        """``?queue=...`` for a link to this filter with ``changes`` applied."""
        params = self.params(**changes)
        return "?" + urlencode(params) if params else ""

    @property
    def active(self) -> bool:
        return any(self.params(offset=0).values())


def _moment(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
