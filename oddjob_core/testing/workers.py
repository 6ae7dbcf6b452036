"""Real ``oddjob worker`` processes for a backend's tests: start them, read their logs, kill them.

Some behaviour shows only across processes: a SIGKILLed worker's job runs
again after its lease, a server restart loses no job. A backend's tests start
workers with :class:`WorkerProcesses` in an environment built by
:func:`make_worker_env` (from ``ODDJOB_*`` variables, which :func:`settings_env`
writes from nested settings), enqueue jobs whose targets the workers can import
(such as ``oddjob_core.testing.targets``) and poll for the outcome with
:func:`wait_for`::

    @pytest.fixture
    def workers(tmp_path):
        settings = {"storage": "mine", "mine": {...}, "allowed_prefixes": [...]}
        with WorkerProcesses(make_worker_env(settings_env(settings)), cwd=tmp_path) as processes:
            yield processes

    def test_killed_worker(workers):
        victim = workers.start("--workers", "1")
        ...

``WorkerSuite`` (``oddjob_core.testing.worker_suite``) wraps this in a ready fixture
and a shared crash test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ..config import ENV_PREFIX


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` every ``interval`` s: True once it holds, False after ``timeout`` s.

    Returns a bool rather than raising, so the caller's ``assert`` can say what it waited for.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def settings_env(settings: Mapping[str, Any]) -> dict[str, str]:
    """The ``ODDJOB_*`` variables that give a worker process ``settings`` (nested as in oddjob.toml).

    ``{"postgres": {"pool_max_size": 6}}`` becomes ``ODDJOB_POSTGRES__POOL_MAX_SIZE=6``.
    Values are written as JSON, which the settings loader parses; a string stays
    bare unless it would parse as another value (``"60"`` is quoted, to stay a string).
    """
    variables: dict[str, str] = {}
    for key, value in settings.items():
        name = ENV_PREFIX + key.upper().replace("-", "_")  # [example-sqlite]: ..._EXAMPLE_SQLITE
        if isinstance(value, Mapping):
            nested = settings_env(value)
            variables.update({name + "__" + k[len(ENV_PREFIX) :]: v for k, v in nested.items()})
        else:
            variables[name] = _env_value(value)
    return variables


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


def make_worker_env(
    variables: Mapping[str, str], pythonpath: Iterable[str | os.PathLike[str]] = ()
) -> dict[str, str]:
    """The environment for a worker process: this one's plus ``variables`` (``ODDJOB_*`` settings).

    ``pythonpath`` entries (e.g. a tests folder holding job targets) come before
    any inherited ``PYTHONPATH``, so the worker can import targets that are not installed.
    """
    env = {**os.environ, **variables}
    entries = [os.fspath(entry) for entry in pythonpath]
    if entries:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [*entries, os.environ.get("PYTHONPATH")]))
    return env


class WorkerProcesses:
    """``python -m oddjob_core worker`` subprocesses started by one test, killed when it ends.

    Every process shares ``env`` and ``cwd``; process ``i`` (in start order) writes
    its output to ``cwd/worker<i>.log``, read with :meth:`log` to explain a failed
    assertion. Use as a context manager (or call :meth:`kill_all`) so no worker
    outlives its test.
    """

    def __init__(self, env: Mapping[str, str], cwd: Path, *, quiet: bool = True) -> None:
        """``quiet`` passes ``--quiet`` (no progress lines, warnings only) so logs stay small."""
        self.env = dict(env)
        self.cwd = Path(cwd)
        self.quiet = quiet
        self.processes: list[subprocess.Popen[str]] = []

    def start(
        self, *args: str, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start one worker with CLI ``args`` (e.g. ``"--workers", "4", "--burst"``).

        ``extra_env`` sets variables for this process only, on top of the shared ``env``.
        """
        command = [sys.executable, "-m", "oddjob_core", "worker"]
        if self.quiet:
            command.append("--quiet")
        with self.log_path(len(self.processes)).open("w") as log:  # the child keeps its own handle
            proc = subprocess.Popen(
                [*command, *args],
                env={**self.env, **(extra_env or {})},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.processes.append(proc)
        return proc

    def log_path(self, index: int) -> Path:
        """Where the ``index``-th started worker writes its output."""
        return self.cwd / f"worker{index}.log"

    def log(self, index: int) -> str:
        """The output so far of the ``index``-th started worker (0 is the first)."""
        return self.log_path(index).read_text()

    def terminate_all(self, timeout: float = 60.0) -> None:
        """SIGTERM every worker still running (a graceful stop), then wait for each to exit.

        Raises ``subprocess.TimeoutExpired`` when one is still running after ``timeout`` s.
        """
        running = [proc for proc in self.processes if proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            proc.wait(timeout)

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every worker still running, then wait (``timeout`` s each) for it to exit."""
        running = [proc for proc in self.processes if proc.poll() is None]
        for proc in running:
            proc.kill()
        for proc in running:
            proc.wait(timeout)

    def __enter__(self) -> WorkerProcesses:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill_all()
