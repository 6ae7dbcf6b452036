"""Worker announcements and per-minute counts on SQL Server: conformance (needs a server) + grammar."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from oddjob_sqlserver import SqlServerOptions, SqlServerStorage
from oddjob_sqlserver.names import Names
from oddjob_sqlserver.statements import Entry, catalog
from oddjob_sqlserver.workers import WorkerStatements

from oddjob_core.testing import FinishedHistorySuite, WorkerRegistrySuite, closing_factory
from oddjob_core.testing.storage_suite import StorageFactory


@pytest.fixture
def factory(make_options: Callable[..., SqlServerOptions]) -> Iterator[StorageFactory]:
    with closing_factory(lambda: SqlServerStorage(make_options())) as made:
        yield made


class TestSqlServerWorkerRegistry(WorkerRegistrySuite):
    @pytest.fixture
    def storage_factory(self, factory: StorageFactory) -> StorageFactory:
        return factory


class TestSqlServerFinishedHistory(FinishedHistorySuite):
    @pytest.fixture
    def storage_factory(self, factory: StorageFactory) -> StorageFactory:
        return factory


def test_announcement_statements_are_in_the_grammar_checked_catalog() -> None:
    names = Names("jobs_here", "app1_")
    found = {e.name: e for e in catalog(names)}
    for name, sql in WorkerStatements(names).catalog():
        assert found[name].sql == sql
        assert "[jobs_here].[app1_" in sql, name
    assert "migration 2[0]" in found  # the workers table DDL is parsed with the rest


@pytest.mark.parametrize(
    ("statement", "markers"),
    [
        ("workers.announce", 6),  # info, expires, id; then id, info, expires
        ("workers.withdraw", 1),
        ("workers.expire", 0),
        ("workers.live", 0),
        ("workers.finished(by_queue=False)", 1),
        ("workers.finished(by_queue=True)", 2),
    ],
)
def test_announcement_parameter_counts_match_what_the_storage_passes(
    statement: str, markers: int
) -> None:
    found = {e.name: e for e in catalog(Names())}
    assert Entry(statement, found[statement].sql).parameters == markers
