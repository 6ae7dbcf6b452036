"""The sqlserver storage passes the shared storage conformance suite (needs ODDJOB_SQLSERVER_DSN)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from oddjob_sqlserver import SqlServerOptions, SqlServerStorage

from oddjob_core.storage import Storage
from oddjob_core.testing import StorageSuite, closing_factory, make_envelope
from oddjob_core.testing.recurring_suite import RecurringSuite
from oddjob_core.testing.storage_suite import StorageFactory


class TestSqlServerStorage(StorageSuite, RecurringSuite):
    @pytest.fixture
    def storage_factory(
        self, make_options: Callable[..., SqlServerOptions]
    ) -> Iterator[StorageFactory]:
        with closing_factory(lambda: SqlServerStorage(make_options())) as factory:
            yield factory

    def inject_corrupt_job(self, storage: Storage, queue: str) -> None:
        """A row whose envelope is valid JSON (the ISJSON check holds) but not an envelope."""
        assert isinstance(storage, SqlServerStorage)
        env = make_envelope(queue)
        with storage.connection() as conn:
            conn.execute(
                f"INSERT INTO {storage.names.jobs} (id, queue, target, state, run_at, envelope, "
                "created_at, updated_at) VALUES (?, ?, ?, N'ready', "
                "DATEADD(second, -1, SYSUTCDATETIME()), "
                """N'{"id": "not-a-uuid", "arguments": 42}', SYSUTCDATETIME(), SYSUTCDATETIME())""",
                env.id,
                queue,
                env.target,
            )
            conn.commit()

    overridden_tests = {}
