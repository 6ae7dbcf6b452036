"""The first hour of a new user, through the real ``oddjob`` command in a subprocess (#19)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from oddjob_core import Oddjob, call
from oddjob_core.testing.cli import oddjob, project


def test_cwd_is_on_sys_path_so_the_project_imports(tmp_path: Path) -> None:
    root = project(tmp_path)
    done = oddjob("enqueue", "myapp.jobs:hello", "--args", '["x"]', cwd=root)
    assert done.returncode == 0, done.stderr
    uuid.UUID(done.stdout.strip())


def test_no_cwd_path_opts_out(tmp_path: Path) -> None:
    root = project(tmp_path)
    flag = oddjob("--no-cwd-path", "enqueue", "myapp.jobs:hello", "--args", '["x"]', cwd=root)
    assert flag.returncode == 1
    assert "'myapp.jobs' listed in `imports` cannot be imported" in flag.stderr
    env = oddjob("queues", cwd=root, env={"ODDJOB_NO_CWD_PATH": "1"})
    assert env.returncode == 1


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("os:system", "'os:system' (stored as 'posix:system') would not be run"),
        ("myapp.jobs:_log", "'_log' is a private name"),
        ("builtins:print", "neither a @job function of a module listed in `imports`"),
        ("myapp.jobs:nope", "cannot be imported here"),
        ("print", "must look like 'package.module:function'"),
    ],
)
def test_untrusted_targets_are_refused_at_enqueue(tmp_path: Path, target: str, why: str) -> None:
    root = project(tmp_path)
    done = oddjob("enqueue", target, "--args", '["true"]', cwd=root)
    assert done.returncode == 1, done.stdout
    assert why in done.stderr
    assert done.stderr.startswith("error: ")
    listed = oddjob("jobs", "list", "--json", cwd=root)
    assert json.loads(listed.stdout)["total"] == 0


def test_allowed_prefixes_name_the_trust_too(tmp_path: Path) -> None:
    root = project(tmp_path, config='allowed_prefixes = ["myapp"]\n')
    assert oddjob("enqueue", "myapp.jobs:hello", "--args", '["x"]', cwd=root).returncode == 0
    done = oddjob("enqueue", "json:dumps", "--args", '["x"]', cwd=root)
    assert done.returncode == 1
    assert "`allowed_prefixes`" in done.stderr


def test_with_no_trust_configured_enqueue_stores_and_warns_and_the_worker_says_so(
    tmp_path: Path,
) -> None:
    done = oddjob("enqueue", "builtins:len", "--queue", "barq", "--args", '["x"]', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning: target 'builtins:len' is stored, but no worker with this configuration" in (
        done.stderr
    )
    counts = json.loads(oddjob("queues", "--json", cwd=tmp_path).stdout)
    assert counts == {"barq": {"ready": 1}}
    worker = oddjob("worker", "--burst", "--queue", "barq", cwd=tmp_path)
    assert worker.returncode == 0
    assert "this worker trusts no target" in worker.stderr


def test_a_short_id_prefix_or_suffix_is_accepted_everywhere(tmp_path: Path) -> None:
    root = project(tmp_path)
    first = oddjob("enqueue", "myapp.jobs:boom", "--args", '["a"]', "--retries", "0", cwd=root)
    job_id = first.stdout.strip()
    oddjob("worker", "--burst", cwd=root)
    head, tail = job_id[:13], job_id[-12:]
    for short in (head, tail, job_id.replace("-", "")[:16]):
        shown = oddjob("jobs", "show", short, "--json", cwd=root)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["id"] == job_id
    retried = oddjob("jobs", "retry", tail, cwd=root)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == f"requeued {job_id}"
    cancelled = oddjob("jobs", "cancel", head, cwd=root)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"cancelled {job_id}"


def test_an_ambiguous_short_id_lists_the_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path, config="")
    monkeypatch.chdir(root)
    with Oddjob(root / "oddjob.toml") as app, pytest.warns(UserWarning, match="no worker"):
        ids = [
            str(i) for i in app.enqueue_many([call("builtins:len", "a"), call("builtins:len", "b")])
        ]
    prefix = ids[0][:10]  # nine hex digits: the same 4 s window (made a moment apart)
    assert ids[1].startswith(prefix)
    shown = oddjob("jobs", "show", prefix, cwd=root)
    assert shown.returncode == 1
    assert "is ambiguous: 2 job ids match" in shown.stderr
    assert ids[0] in shown.stderr
    assert ids[1] in shown.stderr
    missing = oddjob("jobs", "show", "abcdef012345", cwd=root)
    assert missing.returncode == 1
    assert "no job id starts or ends with 'abcdef012345'" in missing.stderr


def test_configuration_mistakes_are_errors(tmp_path: Path) -> None:
    cases = {
        '[tool.oddjob]\nstorage = "memory"\n': "[tool.oddjob] table, which is for pyproject.toml",
        '[filesytem]\npath = "x"\n': "did you mean [filesystem]?",
        'storage = "postgress"\n': "did you mean 'postgres'?",
        'storag = "memory"\n': "did you mean 'storage'?",
    }
    for n, (text, message) in enumerate(cases.items()):
        folder = tmp_path / str(n)
        folder.mkdir()
        (folder / "oddjob.toml").write_text(text)
        done = oddjob("queues", cwd=folder)
        assert done.returncode == 1, text
        assert message in done.stderr, done.stderr
        assert "oddjob-postgress" not in done.stderr


def test_documented_exit_codes_of_the_core_commands(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert oddjob("--help", cwd=root).returncode == 0
    assert "Exit codes: 0 done; 1 an error" in oddjob("--help", cwd=root).stdout
    for command in (["worker", "--burst"], ["queues"], ["jobs", "list"], ["plugins"]):
        done = oddjob(*command, cwd=root)
        assert done.returncode == 0, (command, done.stderr)
    usage = oddjob("jobs", "list", "--state", "nope", cwd=root)
    assert usage.returncode == 2
    assert "Invalid value for '--state'" in usage.stderr
    assert oddjob("no-such-command", cwd=root).returncode == 2
    assert oddjob("enqueue", "myapp.jobs:hello", "--delay", "soon", cwd=root).returncode == 2
    assert oddjob("jobs", "show", "0" * 32, cwd=root).returncode == 1
    done = oddjob("enqueue", "myapp.jobs:boom", "--args", '["x"]', "--retries", "0", cwd=root)
    oddjob("worker", "--burst", cwd=root)
    again = oddjob("jobs", "cancel", done.stdout.strip(), cwd=root)  # finished: cannot cancel
    assert again.returncode == 1
    assert again.stderr.startswith("Error: job ")


def test_burst_waits_for_a_quick_retry_by_default(tmp_path: Path) -> None:
    root = project(tmp_path, config='imports = ["myapp.jobs"]\n[retry]\nmin_wait = 0.1\n')
    job_id = oddjob("enqueue", "myapp.jobs:flaky", "--args", '["marker"]', cwd=root).stdout.strip()
    worker = oddjob("worker", "--burst", cwd=root)
    assert worker.returncode == 0, worker.stderr
    assert "1 job(s) succeeded, 0 failed for good; 1 attempt(s) failed and were retried" in (
        worker.stderr
    )
    shown = json.loads(oddjob("jobs", "show", job_id, "--json", cwd=root).stdout)
    assert shown["state"] == "succeeded"


def test_attempts_are_numbered_across_requeues(tmp_path: Path) -> None:
    root = project(tmp_path, config='imports = ["myapp.jobs"]\n[retry]\nmin_wait = 0.1\n')
    args = ["enqueue", "myapp.jobs:boom", "--args", '["again"]', "--retries", "1"]
    job_id = oddjob(*args, cwd=root).stdout.strip()
    oddjob("worker", "--burst", "--burst-wait", "5", cwd=root)
    assert oddjob("jobs", "retry", job_id, cwd=root).returncode == 0
    oddjob("worker", "--burst", "--burst-wait", "5", cwd=root)
    shown = oddjob("jobs", "show", job_id, cwd=root).stdout
    numbered = [line.split(" at ")[0] for line in shown.splitlines() if line.startswith("attempt ")]
    assert numbered == [
        "attempt 1",
        "attempt 2",
        "attempt 3 (attempt 1 after requeue 1)",
        "attempt 4 (attempt 2 after requeue 1)",
    ]


def test_a_float_for_a_decimal_is_stored_exactly(tmp_path: Path) -> None:
    root = project(tmp_path)
    job_id = oddjob("enqueue", "myapp.jobs:total", "--args", "[0.1, 3]", cwd=root).stdout.strip()
    stored = json.loads(oddjob("jobs", "show", job_id, "--json", cwd=root).stdout)
    assert stored["envelope"]["arguments"] == {"price": "0.1", "count": 3}
    oddjob("worker", "--burst", cwd=root)
    done = json.loads(oddjob("jobs", "show", job_id, "--json", cwd=root).stdout)
    assert done["result"] == "0.3"  # not 0.30000000000000004


def test_jobs_list_target_takes_a_module_prefix_and_every_option_is_explained(
    tmp_path: Path,
) -> None:
    root = project(tmp_path)
    oddjob("enqueue", "myapp.jobs:hello", "--args", '["x"]', cwd=root)
    for target, total in (("myapp.jobs", 1), ("myapp", 1), ("myapp.jobs:hello", 1), ("my", 0)):
        listed = oddjob("jobs", "list", "--target", target, "--json", cwd=root)
        assert json.loads(listed.stdout)["total"] == total, target
    helped = oddjob("jobs", "list", "--help", cwd=root).stdout
    options = [line for line in helped.splitlines() if line.strip().startswith("-")]
    assert len(options) >= 8
    for line in options:  # every option has text after its name
        assert len(line.strip().split("  ", 1)) == 2 or line.strip().endswith("]"), line


def test_an_untrusted_module_is_refused_before_its_code_runs(tmp_path: Path) -> None:
    root = project(tmp_path)
    marker = root / "imported.txt"
    (root / "evilmod.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\ndef f() -> None: ...\n"
    )
    done = oddjob("enqueue", "evilmod:f", cwd=root)
    assert done.returncode == 1, done.stdout
    assert "'evilmod:f' would not be run by a worker" in done.stderr
    assert not marker.exists(), "enqueue imported a module no worker trusts (its code ran)"
