"""The postgres store keeps worker announcements and counts finished jobs per minute."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from oddjob_postgres import PostgresOptions, PostgresStorage

from oddjob_core.testing import FinishedHistorySuite, WorkerRegistrySuite, closing_factory
from oddjob_core.testing.storage_suite import StorageFactory


@pytest.fixture
def factory(make_options: Callable[..., PostgresOptions]) -> Iterator[StorageFactory]:
    with closing_factory(lambda: PostgresStorage(make_options())) as made:
        yield made


class TestPostgresWorkerRegistry(WorkerRegistrySuite):
    @pytest.fixture
    def storage_factory(self, factory: StorageFactory) -> StorageFactory:
        return factory


class TestPostgresFinishedHistory(FinishedHistorySuite):
    @pytest.fixture
    def storage_factory(self, factory: StorageFactory) -> StorageFactory:
        return factory


def test_counting_finished_jobs_walks_the_partial_index(storage: PostgresStorage) -> None:
    with storage.connection() as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")  # an empty table: force the choice
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                f"EXPLAIN SELECT date_trunc('minute', finished_at), count(*) "
                f'FROM "{storage.schema}".jobs '
                "WHERE state IN ('succeeded', 'failed') AND finished_at >= now() GROUP BY 1"
            )
        )
    assert "jobs_finished" in plan, plan
