"""The installed plugin end to end: discovered by entry point, selected by name, run by workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from oddjob_example_sqlite import SqliteOptions, SqliteStorage
from oddjob_example_sqlite import plugin as plugin_module

from oddjob_core import Oddjob, RetryPolicy
from oddjob_core.cli import build_cli
from oddjob_core.errors import ConfigError
from oddjob_core.model import JobState
from oddjob_core.plugins import PluginRegistry
from oddjob_core.testing import make_envelope, targets

TARGETS = "oddjob_core.testing.targets"


def make_app(db: Path) -> Oddjob:
    return Oddjob(
        storage="example-sqlite",
        **{"example-sqlite": {"path": str(db)}},
        allowed_prefixes=[TARGETS],
        poll_interval=0.05,
    )


def test_app_enqueues_and_a_burst_worker_runs_the_jobs(tmp_path: Path) -> None:
    targets.reset()
    with make_app(tmp_path / "app.sqlite3") as app:
        assert isinstance(app.storage, SqliteStorage)
        ok = app.enqueue(targets.echo, "sqlite", {"n": 1})
        flaky = app.options(retry=RetryPolicy(max_retries=3, min_wait=0.01, jitter=0)).enqueue(
            targets.fail_times, "flaky", 1
        )
        doomed = app.options(retry=RetryPolicy(max_retries=0)).enqueue(
            targets.raise_value_error, "doomed"
        )
        # burst: return once nothing is due within burst_wait (the retry is due in 0.01 s)
        app.run_worker(burst=True, burst_wait=0.5, handle_signals=False)
        assert app.get(ok).state is JobState.SUCCEEDED
        assert app.get(ok).result == {"n": 1}
        assert app.get(flaky).state is JobState.SUCCEEDED
        assert app.get(flaky).envelope.attempts == 2
        assert app.get(doomed).state is JobState.FAILED
        assert app.get(doomed).envelope.errors[0].type == "builtins.ValueError"
        assert targets.SEEN["sqlite"] == [{"n": 1}]


def test_a_bad_option_names_the_table_the_value_and_the_fix() -> None:
    app = Oddjob(storage="example-sqlite", **{"example-sqlite": {"path": ":memory:"}})
    with pytest.raises(
        ConfigError, match=r"at example-sqlite: path .*':memory:'.*storage = 'memory'"
    ):
        _ = app.storage


CLAIMER = """
import sys
from oddjob_example_sqlite import SqliteOptions, SqliteStorage
from oddjob_example_sqlite import plugin as plugin_module
storage = SqliteStorage(SqliteOptions(path=sys.argv[1]))
idle = 0
while idle < 3:
    claims = storage.claim("race", 5, 60.0, sys.argv[2])
    idle = 0 if claims else idle + 1
    for c in claims:
        print(c.job.id, flush=True)
        storage.complete(c, None)
"""


def test_processes_never_claim_the_same_job(tmp_path: Path) -> None:
    db = tmp_path / "race.sqlite3"
    with SqliteStorage(SqliteOptions(path=str(db))) as storage:
        envs = [make_envelope("race", arguments={"i": i}) for i in range(300)]
        storage.add(envs)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CLAIMER, str(db), f"p{i}"], stdout=subprocess.PIPE, text=True
            )
            for i in range(3)
        ]
        seen = [line.strip() for p in procs for line in p.communicate(timeout=120)[0].splitlines()]
        assert all(p.returncode == 0 for p in procs)
        assert len(seen) == len(set(seen)), "a job was claimed by two processes"
        assert set(seen) == {str(e.id) for e in envs}
        assert storage.counts("race")["race"] == {JobState.SUCCEEDED: 300}


def test_cli_lists_the_plugin_and_runs_its_command(tmp_path: Path) -> None:
    config = tmp_path / "oddjob.toml"
    db = tmp_path / "cli.sqlite3"
    config.write_text(
        f'storage = "example-sqlite"\nallowed_prefixes = ["{TARGETS}"]\n'
        f'[example-sqlite]\npath = "{db}"\n',
        encoding="utf-8",
    )
    runner = CliRunner()

    def run(*args: str, registry: PluginRegistry | None = None) -> str:
        result = runner.invoke(build_cli(registry), ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
        return result.output

    # discovered through its entry point, like any installed plugin:
    plugins = {p["name"]: p for p in json.loads(run("plugins", "--json"))}
    assert plugins["example-sqlite"]["distribution"] == "oddjob-example-sqlite"
    assert plugins["example-sqlite"]["storage"] == ["example-sqlite"]
    assert plugins["example-sqlite"]["error"] is None
    # The command runs through a registry of just this plugin and the threads executor: in
    # the core, one installed plugin whose oddjob_cli raises stops every later plugin's
    # commands from being added, and this test must not depend on its neighbours.
    import oddjob_threads.plugin

    registry = PluginRegistry(
        entry_points=False,
        extra=[("example-sqlite", plugin_module), ("threads", oddjob_threads.plugin)],
    )
    run("enqueue", f"{TARGETS}:noop", registry=registry)
    run("worker", "--burst", registry=registry)
    out = run("example-sqlite", "info", registry=registry)
    assert f"database: {db}" in out
    assert "journal_mode=wal" in out
    assert "default: succeeded=1" in out
