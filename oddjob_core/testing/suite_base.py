"""The base of the storage conformance suite: fixtures, capability skips, shared helpers.

``StorageSuite`` (and so every backend's test class) inherits from ``SuiteBase``;
its tests are spread over modules by topic (``management_suite``, ``contract_suite``).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

import pytest

from ..clock import utcnow
from ..model import AttemptError, Claim, Envelope
from ..storage import JobManagement, QueueManagement, Storage
from .envelopes import make_envelope

StorageFactory = Callable[[], Storage]
T = TypeVar("T")


@contextlib.contextmanager
def closing_factory(make: StorageFactory) -> Iterator[StorageFactory]:
    """Wrap ``make`` so every instance it returned is closed when the block ends.

    For a ``storage_factory`` fixture whose instances hold connections or pools:
    ``with closing_factory(lambda: MyStorage(options)) as factory: yield factory``.
    """
    made: list[Storage] = []

    def factory() -> Storage:
        instance = make()
        made.append(instance)
        return instance

    try:
        yield factory
    finally:
        for instance in made:
            instance.close()


LEASE = 30.0
#: a lease meant to expire during a test: long enough that a loaded 2-core machine still
#: makes the claim's next call (asserting the job is leased) before it runs out
SHORT_LEASE = 1.0
OWNER = "suite-worker"


def attempt_error(attempt: int, message: str = "boom") -> AttemptError:
    return AttemptError(
        attempt=attempt,
        type="builtins.RuntimeError",
        message=message,
        traceback="Traceback (most recent call last):\n  ...\nRuntimeError: boom",
        at=utcnow(),
    )


def add_and_claim(
    storage: Storage, queue: str, lease: float = LEASE, owner: str = OWNER
) -> tuple[Envelope, Claim]:
    """Add one job to ``queue`` and claim it: where most outcome tests start."""
    env = make_envelope(queue)
    storage.add([env])
    [claim] = storage.claim(queue, 1, lease, owner)
    return env, claim


def skip_unless(found: T | None, storage: Storage, lacking: str) -> T:
    """``found`` (an optional interface of ``storage``), or skip visibly saying what it lacks."""
    if found is None:
        pytest.skip(f"storage '{storage.name}' {lacking}")
    return found


def drain(storage: Storage, queue: str, batch: int = 50) -> list[Claim]:
    claims: list[Claim] = []
    while True:
        got = storage.claim(queue, batch, LEASE, OWNER)
        if not got:
            return claims
        claims.extend(got)


def wait_until_claimed(
    storage: Storage, queue: str, timeout: float, lease: float = LEASE, limit: int = 10
) -> list[Claim]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = storage.claim(queue, limit, lease, OWNER)
        if got:
            return got
        time.sleep(0.05)
    return []


def _expected_failure(test: Callable[..., None], reason: str) -> Callable[..., None]:
    """A copy of suite test ``test`` marked as a strict xfail (the suite's own stays unmarked)."""

    @functools.wraps(test)
    def known_to_fail(*args: Any, **kwargs: Any) -> None:
        test(*args, **kwargs)

    marked: Callable[..., None] = pytest.mark.xfail(reason=reason, strict=True)(known_to_fail)
    return marked


class OptionalInterfaceSuite:
    """Base of every storage suite (``StorageSuite``, optional interfaces): collected through
    subclasses only; a subclass supplies ``storage_factory`` and gets ``storage``.
    """

    __test__ = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True

    @pytest.fixture
    def storage_factory(self) -> Iterator[StorageFactory]:
        """Yield a callable that makes instances on one fresh, empty namespace."""
        raise NotImplementedError(f"{type(self).__name__} must provide a storage_factory fixture")

    @pytest.fixture
    def storage(self, storage_factory: StorageFactory) -> Iterator[Storage]:
        instance = storage_factory()
        try:
            yield instance
        finally:
            instance.close()


class SuiteBase(OptionalInterfaceSuite):
    """Fixtures, skips and expected failures shared by the storage conformance tests."""

    __test__ = False  # collected through subclasses only

    #: suite tests a subclass overrides, each with the reason (the guard test checks this)
    overridden_tests: ClassVar[dict[str, str]] = {}
    #: suite tests this backend is known to fail, each with the reason: they run as
    #: strict xfails (shown in the summary; an unexpected pass fails, so a fix is noticed)
    expected_failures: ClassVar[dict[str, str]] = {}
    #: slack for backends whose clocks or delays are coarse (seconds)
    timing_slack: ClassVar[float] = 0.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)  # collected: __test__ (OptionalInterfaceSuite)
        for name, reason in cls.__dict__.get("expected_failures", {}).items():
            setattr(cls, name, _expected_failure(getattr(cls, name), reason))

    # -- what the subclass supplies: storage_factory (OptionalInterfaceSuite) and ----

    def inject_corrupt_job(self, storage: Storage, queue: str) -> None:
        """Put a job into ``queue`` that the backend cannot decode (garbage bytes, wrong schema)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement inject_corrupt_job(storage, queue)"
        )

    def require(self, storage: Storage, capability: str) -> None:
        """Skip, visibly, a test needing a capability the backend declares it lacks."""
        if not getattr(storage.capabilities, capability):
            pytest.skip(f"storage '{storage.name}' declares no '{capability}' capability")

    def require_management(self, storage: Storage) -> JobManagement:
        """``storage`` as ``JobManagement``; skip, visibly, if it does not implement it."""
        if not isinstance(storage, JobManagement):
            pytest.skip(f"storage '{storage.name}' does not implement JobManagement")
        return storage

    def require_queue_management(self, storage: Storage) -> QueueManagement:
        """``storage`` as ``QueueManagement``; skip, visibly, if it does not implement it."""
        if not isinstance(storage, QueueManagement):
            pytest.skip(f"storage '{storage.name}' does not implement QueueManagement")
        return storage
