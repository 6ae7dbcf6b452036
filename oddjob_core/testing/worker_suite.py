"""Crash tests with real ``oddjob worker`` processes, for backends that several processes share.

Subclass ``WorkerSuite`` (pytest collects the subclass, not this base) and
provide two fixtures, in the class, its module or a conftest:

- ``worker_settings``: the settings, nested as in oddjob.toml, that point a worker
  process at the test's fresh namespace (``storage`` and the backend's table);
  they reach the process as ``ODDJOB_*`` variables (see ``settings_env``);
- ``storage``: an instance on that same namespace, to enqueue and inspect jobs.

The suite's ``workers`` fixture starts the processes (see ``WorkerProcesses``)
with a short lease, so a killed worker's job is claimed again within seconds.
Backend-specific process tests (a server restart, throughput) can be added to
the subclass and use ``workers`` too.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..model import JobState
from ..storage import Storage, management_of
from . import targets
from .envelopes import make_envelope
from .workers import WorkerProcesses, make_worker_env, settings_env, wait_for

#: what every suite worker runs with; ``worker_settings`` may override any of it
BASE_SETTINGS: dict[str, Any] = {
    "allowed_prefixes": [targets.__name__],
    "lease": 2,
    "poll_interval": 0.5,
}


class WorkerSuite:
    """Behaviour of real worker processes that die: the job of a SIGKILLed one runs again."""

    __test__ = False  # collected through subclasses only

    #: folders put first on the workers' PYTHONPATH, for job targets that are not installed
    #: (e.g. the tests folder; allow their module in ``worker_settings``)
    worker_pythonpath: ClassVar[tuple[str | Path, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__test__" not in cls.__dict__:
            cls.__test__ = True

    @pytest.fixture
    def workers(
        self, worker_settings: Mapping[str, Any], tmp_path: Path
    ) -> Iterator[WorkerProcesses]:
        """Worker processes in ``tmp_path`` (their logs too), killed after the test."""
        variables = settings_env({**BASE_SETTINGS, **worker_settings})
        env = make_worker_env(variables, self.worker_pythonpath)
        with WorkerProcesses(env, cwd=tmp_path) as processes:
            yield processes

    def _kill_then_recover(
        self,
        storage: Storage,
        workers: WorkerProcesses,
        tmp_path: Path,
        after_kill: Callable[[uuid.UUID], None] | None = None,
    ) -> uuid.UUID:
        """A worker is SIGKILLed mid-job; a second one (burst) runs the job again to the end."""
        lines, flag = tmp_path / "runs.txt", tmp_path / "hang"
        flag.touch()
        env = make_envelope(
            "default",
            target=f"{targets.__name__}:hang_while_flag",
            arguments={"path": str(lines), "flag": str(flag)},
        )
        storage.add([env])
        victim = workers.start("--workers", "1")
        assert wait_for(lambda: lines.exists() and "start" in lines.read_text(), 60), workers.log(0)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        if after_kill is not None:
            after_kill(env.id)
        flag.unlink()
        survivor = workers.start("--workers", "1", "--burst", "--burst-wait", "5")
        survivor.wait(90)
        assert survivor.returncode == 0, workers.log(1)
        assert lines.read_text().splitlines() == [
            "start attempt=1 recovered=False",
            "start attempt=2 recovered=True",
            "end attempt=2",
        ], workers.log(1)
        return env.id

    def test_sigkilled_worker_job_runs_again_after_its_lease(
        self, storage: Storage, workers: WorkerProcesses, tmp_path: Path
    ) -> None:
        self._kill_then_recover(storage, workers, tmp_path)

    def test_sigkilled_worker_job_shows_running_then_succeeded(
        self, storage: Storage, workers: WorkerProcesses, tmp_path: Path
    ) -> None:
        if (jobs := management_of(storage)) is None:
            pytest.skip(f"storage '{storage.name}' does not implement JobManagement (get)")

        def still_running(job_id: uuid.UUID) -> None:
            record = jobs.get(job_id)
            assert record is not None
            assert record.state is JobState.RUNNING  # nobody recorded an outcome

        job_id = self._kill_then_recover(storage, workers, tmp_path, still_running)
        record = jobs.get(job_id)
        assert record is not None
        assert record.state is JobState.SUCCEEDED, workers.log(1)
        assert record.envelope.attempts == 2
