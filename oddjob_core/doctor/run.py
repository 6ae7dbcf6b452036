"""Run doctor's checks: the conformance suite, then the worker smoke test, each in its own namespace."""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from ..config import Settings, backend_options
from ..plugins import PluginRegistry
from ..storage import Storage
from .isolation import DoctorSupport, Isolation, isolate
from .report import Check, Report
from .smoke import smoke_checks

MakeIsolation = Callable[[], Isolation]


def run_doctor(
    settings: Settings,
    registry: PluginRegistry,
    *,
    suite: bool = True,
    smoke: bool = True,
    select: str | None = None,
) -> Report:
    """Every check against the configured storage backend; the namespaces are removed afterwards."""
    backend = registry.storage_backend(settings.storage)
    options = backend_options(settings, backend.name, backend.options)
    report = Report(backend=backend.name)

    def make_isolation() -> Isolation:
        return isolate(backend.name, options)

    first = make_isolation()  # refuses early (ConfigError) when the backend cannot be isolated
    report.namespace = f"a private namespace per check (e.g. {first.description})"
    try:
        probe = backend.factory(first.options)
        first.made.append(probe)
        if isinstance(probe, DoctorSupport):
            report.settings.update(probe.server_settings())
    except Exception as exc:
        report.problems.append(f"cannot open storage '{backend.name}': {type(exc).__name__}: {exc}")
        report.problems += first.cleanup()
        return report
    report.problems += first.cleanup()

    def factory_for(isolation: Isolation) -> Callable[[], Storage]:
        def make() -> Storage:
            instance = backend.factory(isolation.options)
            isolation.made.append(instance)
            close = instance.close

            def closing() -> None:  # the cleanup drops the namespace through a live instance
                if not any(instance is c for c in isolation.closed):
                    isolation.closed.append(instance)
                    close()

            setattr(instance, "close", closing)  # noqa: B010
            return instance

        isolation.reopen = make

        return make

    if suite:
        kind = type(probe)
        suite_options = kind.suite_options if issubclass(kind, DoctorSupport) else {}
        skips = kind.suite_skips if issubclass(kind, DoctorSupport) else {}

        def make_suite_isolation() -> Isolation:
            isolation = make_isolation()
            if suite_options:
                isolation.options = msgspec.structs.replace(isolation.options, **suite_options)
            return isolation

        run_suite(report, make_suite_isolation, factory_for, select, skips)
    if smoke:
        isolation = make_isolation()
        try:
            report.checks += smoke_checks(settings, registry, backend.name, factory_for(isolation))
        except Exception:
            report.problems.append("worker smoke test crashed:\n" + traceback.format_exc())
        finally:
            report.problems += isolation.cleanup()
    return report


class _SuitePlugin:
    """Gives the suite its storage factory and collects each test's outcome and time."""

    def __init__(
        self,
        make_isolation: MakeIsolation,
        factory_for: Callable[[Isolation], Callable[[], Storage]],
        report: Report,
        skips: dict[str, str],
    ) -> None:
        self.skips = skips
        self.make_isolation = make_isolation
        self.factory_for = factory_for
        self.report = report
        self.times: dict[str, float] = {}

    @pytest.fixture
    def doctor_storage_factory(
        self, request: pytest.FixtureRequest
    ) -> Iterator[Callable[[], Storage]]:
        reason = self.skips.get(request.node.name)
        if reason:
            pytest.skip(f"not checked here: {reason}")
        isolation = self.make_isolation()
        try:
            yield self.factory_for(isolation)
        finally:
            self.report.problems += isolation.cleanup()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = report.nodeid.rpartition("::")[2]
        self.times[name] = self.times.get(name, 0.0) + report.duration
        failed = report.failed
        skipped = report.skipped
        if report.when == "call" or failed or skipped:
            outcome = "failed" if failed else "skipped" if skipped else "passed"
            detail = ""
            if failed:
                detail = str(report.longrepr)
            elif skipped and isinstance(report.longrepr, tuple):
                detail = str(report.longrepr[2])
            if report.when == "teardown" and not failed:
                return
            self.report.checks.append(
                Check("conformance suite", name, outcome, self.times[name], detail)
            )


def run_suite(
    report: Report,
    make_isolation: MakeIsolation,
    factory_for: Callable[[Isolation], Callable[[], Storage]],
    select: str | None,
    skips: dict[str, str],
) -> None:
    """Run ``suite.TestDoctorStorage`` in-process under pytest, quietly."""
    plugin = _SuitePlugin(make_isolation, factory_for, report, skips)
    here = Path(__file__).with_name("suite.py")
    with tempfile.TemporaryDirectory(prefix="oddjob-doctor-pytest-") as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n")
        args = [str(here), "-c", str(ini), "--rootdir", tmp, "-p", "no:cacheprovider"]
        args += ["-p", "no:terminal"]
        if select:
            args += ["-k", select]
        started = time.monotonic()
        cwd = os.getcwd()
        try:
            code = pytest.main(args, plugins=[plugin])
        finally:
            os.chdir(cwd)
        if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not report.checks:
            report.problems.append(
                f"the conformance suite did not run (pytest exit {int(code)}) "
                f"after {time.monotonic() - started:.1f} s"
            )
