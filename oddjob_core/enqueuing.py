"""Enqueueing: ``call(...)`` describes a job, an ``Enqueuer`` (``app.options(...)``) stores it.

The ``Oddjob`` application builds the enqueuers; this module holds what turns
a call into a stored envelope (arguments bound and encoded, defaults, unique
keys, the headers plugins add).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from .clock import as_utc, utcnow
from .errors import EnqueueError
from .ids import uuid7
from .model import Envelope, RetryPolicy
from .unique import require_unique_keys

if TYPE_CHECKING:
    from .app import Oddjob


@dataclass(frozen=True)
class Call:
    """An explicit call of a target, made with ``call(fn, *args, **kwargs)`` for batch enqueue."""

    target: Callable[..., Any] | str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def call(target: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Call:
    """Capture a call without running it: ``app.enqueue_many([call(send, 1), call(send, 2)])``."""
    return Call(target, args, kwargs)


@dataclass(frozen=True)
class Enqueuer:
    """Enqueue with options; made by ``Oddjob.options``. ``None`` means: the target's default."""

    app: Oddjob
    queue: str | None = None
    run_at: datetime | None = None
    delay: float | None = None
    priority: int | None = None
    retry: RetryPolicy | None = None
    timeout: float | None = None
    key: str | None = None

    def enqueue(self, target: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> uuid.UUID:
        """Store one job and return its id (with ``key``: the id of the job holding the key)."""
        envelope = self.build(target, args, kwargs)
        if self.key is not None:
            return self._store_unique(envelope)
        self._store([envelope])
        return envelope.id

    def _store_unique(self, envelope: Envelope) -> uuid.UUID:
        holder = require_unique_keys(self.app.storage).add_unique(envelope)
        if holder == envelope.id:
            self.app.registry.hooks.job_enqueued([envelope])
        return holder

    def _no_key(self) -> None:
        if self.key is not None:
            raise EnqueueError("key= names one job: enqueue it with enqueue(), not enqueue_many()")

    def enqueue_many(self, calls: Iterable[Call]) -> list[uuid.UUID]:
        """Store many jobs with one storage call; all are validated before any is stored."""
        self._no_key()
        envelopes = [self.envelope(c) for c in calls]
        if envelopes:
            self._store(envelopes)
        return [e.id for e in envelopes]

    def _store(self, envelopes: list[Envelope]) -> None:
        try:
            self.app.writer.add(envelopes)
        except (UnicodeError, RecursionError) as exc:
            raise _unstorable(exc) from exc
        self.app.registry.hooks.job_enqueued(envelopes)

    async def enqueue_async(
        self, target: Callable[..., Any] | str, /, *args: Any, **kwargs: Any
    ) -> uuid.UUID:
        """``enqueue`` for asyncio code: the storage call runs off the event loop."""
        if self.key is not None:
            envelope = self.build(target, args, kwargs)
            return await asyncio.to_thread(self._store_unique, envelope)
        return (await self.enqueue_many_async([Call(target, args, kwargs)]))[0]

    async def enqueue_many_async(self, calls: Iterable[Call]) -> list[uuid.UUID]:
        """``enqueue_many`` for asyncio code."""
        self._no_key()
        envelopes = [self.envelope(c) for c in calls]
        if envelopes:
            try:
                await self.app.writer.add_async(envelopes)
            except (UnicodeError, RecursionError) as exc:
                raise _unstorable(exc) from exc
            self.app.registry.hooks.job_enqueued(envelopes)
        return [e.id for e in envelopes]

    def envelope(self, c: Call) -> Envelope:
        """Validate a call and build its envelope (no storage involved)."""
        return self.build(c.target, c.args, c.kwargs)

    def build(
        self, target_ref: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Envelope:
        """``envelope`` without a ``Call`` (one fewer object per single enqueue)."""
        target = self.app.target_for(target_ref)
        defaults, settings = target.defaults, self.app.settings
        now = utcnow()
        if self.run_at is not None:
            run_at = as_utc(self.run_at)
        elif self.delay is not None:
            run_at = now + timedelta(seconds=self.delay)
        else:
            run_at = now
        envelope = Envelope(
            id=uuid7(),
            queue=self.queue or defaults.queue or settings.default_queue,
            target=target.name,
            arguments=target.plan.encode(args, kwargs),
            run_at=run_at,
            created_at=now,
            priority=self.priority if self.priority is not None else (defaults.priority or 0),
            retry=self.retry or defaults.retry or settings.retry,
            timeout=self.timeout if self.timeout is not None else defaults.timeout,
            key=self.key,
        )
        headers = self.app.registry.hooks.job_headers(envelope)
        return msgspec.structs.replace(envelope, headers=headers) if headers else envelope


def _unstorable(exc: UnicodeError | RecursionError) -> EnqueueError:
    """A value only the backend's encoder refuses (a lone surrogate, a document nested past
    the recursion limit) is the caller's error: ``EnqueueError``, nothing was stored."""
    return EnqueueError(
        f"the job cannot be stored: {type(exc).__name__}: {exc} (strings must be valid "
        "Unicode without lone surrogates; arguments must not nest deeper than the "
        f"recursion limit, {sys.getrecursionlimit()})"
    )
