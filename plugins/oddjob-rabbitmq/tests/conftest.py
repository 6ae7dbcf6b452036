"""Fixtures for tests against the real broker: a unique name prefix per test, deleted after.

The broker is ``$ODDJOB_TEST_RABBITMQ_URL`` (default amqp://guest:guest@127.0.0.1:5672/).
When it is down, the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from oddjob_rabbitmq import RabbitOptions, RabbitStorage

from oddjob_core.errors import StorageUnavailable
from oddjob_core.testing import service_unavailable

URL = os.environ.get("ODDJOB_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

MakeStorage = Callable[..., RabbitStorage]


def connect(**overrides: Any) -> RabbitStorage:
    """A storage on the test broker, or skip (fail in CI) when it is down."""
    values: dict[str, Any] = {"url": URL, "connect_timeout": 5.0}
    values.update(overrides)
    try:
        return RabbitStorage(RabbitOptions(**values))
    except StorageUnavailable as exc:
        service_unavailable(f"RabbitMQ is not reachable: {exc}")
        raise


@pytest.fixture
def prefix() -> str:
    return f"oddjob-test-{secrets.token_hex(4)}."


@pytest.fixture
def make_storage(prefix: str) -> Iterator[MakeStorage]:
    """Make storages on this test's prefix; close them and delete every queue they used after."""
    made: list[RabbitStorage] = []

    def make(**overrides: Any) -> RabbitStorage:
        values: dict[str, Any] = {"prefix": prefix, "prefetch": 1000}
        values.update(overrides)
        instance = connect(**values)
        made.append(instance)
        return instance

    yield make
    used: set[str] = set()
    for instance in made:
        used |= instance.known_queues
        instance.close()
    if used:
        cleaner = connect(prefix=prefix)
        try:
            cleaner.delete_topology(sorted(used))
        finally:
            cleaner.close()


@pytest.fixture
def storage(make_storage: MakeStorage) -> RabbitStorage:
    return make_storage()
