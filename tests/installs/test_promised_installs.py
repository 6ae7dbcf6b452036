"""The install commands README.md promises, run as a new user runs them.

Each test makes a fresh virtual environment and installs with nothing but
``pip install --find-links <wheels> <names>`` (dependencies from the package
index as usual), then drives the installed ``oddjob`` command in a folder of
its own: one job is enqueued and a burst worker must run it. The four
environments are installed side by side (pip mostly waits on the network
and the disk), so the module takes about as long as its slowest install.

The wheels come from ``$ODDJOB_TEST_WHEELS`` (``nox -s installs`` builds them
and sets it); without it every test here skips, saying so.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import venv
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from oddjob_core.testing import service_unavailable

WHEELS = os.environ.get("ODDJOB_TEST_WHEELS", "")
pytestmark = pytest.mark.skipif(
    not WHEELS, reason="needs built wheels: run `nox -s installs` (sets ODDJOB_TEST_WHEELS)"
)

POSTGRES_DSN = os.environ.get(
    "ODDJOB_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
RABBITMQ_URL = os.environ.get("ODDJOB_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

JOBS = """
from oddjob_core import job


@job
def mark(tag: str) -> None:
    with open("ran.txt", "a") as out:
        out.write(tag + "\\n")
"""


SETS = {
    "core": ["oddjob-core"],
    "postgres": ["oddjob-core", "oddjob-postgres"],
    "rabbitmq": ["oddjob-core", "oddjob-rabbitmq"],
    "sqlserver": ["oddjob-core", "oddjob-sqlserver"],
}


class Installed:
    """A fresh venv holding exactly what ``pip install --find-links <wheels> <names>`` gave."""

    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = root
        venv.create(root / "venv", with_pip=True)
        self.bin = root / "venv" / ("Scripts" if sys.platform == "win32" else "bin")
        command = [str(self.bin / "python"), "-m", "pip", "install", "-q"]
        command += ["--disable-pip-version-check", "--find-links", WHEELS, *names]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise AssertionError(f"`pip install {' '.join(names)}` failed:\n{done.stderr}")
        self.app = root / "app"
        self.app.mkdir()
        (self.app / "promised_jobs.py").write_text(textwrap.dedent(JOBS))

    def oddjob(self, *args: str, config: str = "") -> subprocess.CompletedProcess[str]:
        """Run the venv's ``oddjob`` in the app folder (config: the oddjob.toml written there)."""
        (self.app / "oddjob.toml").write_text('imports = ["promised_jobs"]\n' + config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ODDJOB_")}
        env["PYTHONPATH"] = str(self.app)
        return subprocess.run(
            [str(self.bin / "oddjob"), *args],
            cwd=self.app,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def run_one_job(self, config: str = "") -> None:
        tag = secrets.token_hex(4)
        enqueued = self.oddjob(
            "enqueue", "promised_jobs:mark", "--args", f'["{tag}"]', config=config
        )
        assert enqueued.returncode == 0, enqueued.stdout + enqueued.stderr
        worker = self.oddjob("worker", "--burst", config=config)
        assert worker.returncode == 0, worker.stdout + worker.stderr
        ran = self.app / "ran.txt"
        assert ran.exists(), f"the job did not run:\n{worker.stdout}{worker.stderr}"
        assert ran.read_text().split() == [tag]


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Installed]]:
    """Start every install at once; each test waits for the one it needs."""
    with ThreadPoolExecutor(len(SETS)) as pool:
        futures: dict[str, Future[Installed]] = {
            key: pool.submit(Installed, tmp_path_factory.mktemp(key), names)
            for key, names in SETS.items()
        }
        yield lambda key: futures[key].result(timeout=900)


def test_core_alone_runs_a_job_with_no_configuration(installs: Callable[[str], Installed]) -> None:
    installed = installs("core")
    installed.run_one_job()
    assert (installed.app / ".oddjob").is_dir(), "the default store is the local folder .oddjob"
    version = installed.oddjob("--version")
    assert version.returncode == 0, version.stderr
    assert "threads" in version.stdout
    assert "filesystem" in version.stdout


def test_core_and_postgres_run_a_job_on_the_local_server(
    installs: Callable[[str], Installed],
) -> None:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(POSTGRES_DSN, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        service_unavailable(f"PostgreSQL is not reachable at {POSTGRES_DSN}: {exc}")
    schema = f"oddjob_install_{secrets.token_hex(4)}"
    installed = installs("postgres")
    try:
        installed.run_one_job(
            f'storage = "postgres"\n[postgres]\ndsn = "{POSTGRES_DSN}"\nschema = "{schema}"\n'
        )
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_core_and_rabbitmq_run_a_job_on_the_local_broker(
    installs: Callable[[str], Installed],
) -> None:
    rabbitmq = pytest.importorskip("oddjob_rabbitmq")
    from oddjob_core.errors import StorageUnavailable

    prefix = f"oddjob-install-{secrets.token_hex(4)}."
    try:
        cleaner = rabbitmq.RabbitStorage(
            rabbitmq.RabbitOptions(url=RABBITMQ_URL, prefix=prefix, connect_timeout=5.0)
        )
    except StorageUnavailable as exc:
        service_unavailable(f"RabbitMQ is not reachable at {RABBITMQ_URL}: {exc}")
        raise
    try:
        installed = installs("rabbitmq")
        installed.run_one_job(
            f'storage = "rabbitmq"\n[rabbitmq]\nurl = "{RABBITMQ_URL}"\nprefix = "{prefix}"\n'
        )
    finally:
        cleaner.delete_topology(["default"])
        cleaner.close()


def test_core_and_sqlserver_reach_the_connection_not_a_missing_plugin(
    installs: Callable[[str], Installed],
) -> None:
    installed = installs("sqlserver")
    config = (
        'storage = "sqlserver"\n[sqlserver]\n'
        # nothing listens on port 1: the closest a machine without SQL Server gets
        'connection_string = "DRIVER={FreeTDS};SERVER=127.0.0.1;PORT=1;UID=sa;PWD=not-a-secret"\n'
        "connect_timeout = 2\nretry_timeout = 2\n"
    )
    enqueued = installed.oddjob("enqueue", "promised_jobs:mark", "--args", '["x"]', config=config)
    out = enqueued.stdout + enqueued.stderr
    assert enqueued.returncode != 0, out
    assert "not installed" not in out, out
    last = out.strip().splitlines()[-1]
    assert "SQL Server" in last, last
    assert "reach" in last or "unavailable" in last, last
