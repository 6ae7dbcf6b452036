"""The transient-error retry loop of database backends: back off, retry, give up at a deadline.

A connection lost, a server restarting, a pool exhausted: the operation runs
again on a (possibly new) connection, with capped exponential backoff and
jitter, until ``timeout`` runs out; then the backend's ``unavailable`` error
names the target and the fix. Anything not transient fails at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import StorageError, StorageUnavailable

T = TypeVar("T")


def _nothing(exc: BaseException) -> None:
    return None


@dataclass
class TransientRetry:
    """How one backend retries: which errors, how to report them, what to do between tries."""

    target: str  # for the log line: where the operation failed
    timeout: float  # seconds from the first try after which a transient failure is final
    stopped: threading.Event  # set by close(): stop retrying at once
    errors: tuple[type[BaseException], ...]  # the driver's errors (others propagate as they are)
    is_transient: Callable[[BaseException], bool]
    failed: Callable[[str, BaseException], StorageError]  # (what, error) -> a permanent failure
    unavailable: Callable[[str, BaseException, int], StorageUnavailable]  # (what, error, tries)
    describe: Callable[[BaseException], str]  # the error for the log line, secrets removed
    log: logging.Logger
    recover: Callable[[BaseException], None] = _nothing  # e.g. drop broken pooled connections
    first_wait: float = 0.05
    max_wait: float = 2.0

    def run(self, what: str, operation: Callable[[bool], T]) -> T:
        """``operation(retried)``, retried on transient failures; ``retried`` from the second try.

        The previous try may have been applied before its connection broke, so a
        non-idempotent write uses ``retried`` to recognise its own earlier success.
        """
        deadline = time.monotonic() + self.timeout
        tries = 0
        while True:
            try:
                return operation(tries > 0)
            except self.errors as exc:
                if not self.is_transient(exc):
                    raise self.failed(what, exc) from exc
                tries += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.stopped.is_set():
                    raise self.unavailable(what, exc, tries) from exc
                self.recover(exc)
                wait = min(self.max_wait, self.first_wait * 2 ** (tries - 1), remaining)
                wait *= random.uniform(0.5, 1.0)
                self.log.warning(
                    "%s failed on %s (%s); retry %d in %.2f s",
                    what,
                    self.target,
                    self.describe(exc),
                    tries,
                    wait,
                )
                self.stopped.wait(wait)
