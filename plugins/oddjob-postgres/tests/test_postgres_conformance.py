"""The postgres storage passes the shared storage conformance suite, one fresh schema per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from oddjob_postgres import PostgresOptions, PostgresStorage

from oddjob_core.storage import Storage
from oddjob_core.testing import StorageSuite, closing_factory, make_envelope
from oddjob_core.testing.recurring_suite import RecurringSuite
from oddjob_core.testing.storage_suite import StorageFactory


class TestPostgresStorage(StorageSuite, RecurringSuite):
    @pytest.fixture
    def storage_factory(
        self, make_options: Callable[..., PostgresOptions]
    ) -> Iterator[StorageFactory]:
        with closing_factory(lambda: PostgresStorage(make_options())) as factory:
            yield factory

    def inject_corrupt_job(self, storage: Storage, queue: str) -> None:
        """A row whose envelope is valid JSON but not an envelope (jsonb cannot hold garbage bytes)."""
        assert isinstance(storage, PostgresStorage)
        env = make_envelope(queue)
        with storage.connection() as conn:
            conn.execute(
                f'INSERT INTO "{storage.schema}".jobs (id, queue, target, state, run_at, '
                "envelope, created_at) VALUES (%s, %s, %s, 'ready', now() - interval '1 second', "
                """'{"id": "not-a-uuid", "arguments": 42}', now())""",
                (env.id, queue, env.target),
            )

    def inject_misrouted_job(self, storage: Storage, queue: str, kind: str) -> uuid.UUID:
        """A row copied by SQL: its columns say ``queue`` / a new id, its envelope does not."""
        assert isinstance(storage, PostgresStorage)
        env = make_envelope(queue)
        storage.add([env])
        stored_as = uuid.uuid4() if kind == "id" else env.id
        column_queue = queue
        envelope_queue = f"{queue}-elsewhere" if kind == "queue" else queue
        with storage.connection() as conn:
            conn.execute(
                f'UPDATE "{storage.schema}".jobs SET id = %s, queue = %s, '
                "envelope = jsonb_set(envelope, '{queue}', to_jsonb(%s::text)) WHERE id = %s",
                (stored_as, column_queue, envelope_queue, env.id),
            )
        return stored_as

    overridden_tests = {}
