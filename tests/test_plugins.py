"""Plugin discovery: broken plugins are reported, not fatal; conflicts and typos are caught."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from oddjob_core import BackendNotFound, Oddjob
from oddjob_core.cli import build_cli
from oddjob_core.errors import PluginConflict
from oddjob_core.plugins import PluginRegistry

STORE_MODULE = """
from oddjob_core import hookimpl
from oddjob_core.backends import StorageBackend
from oddjob_core.memory import MemoryStorage

@hookimpl
def oddjob_storage_backends():
    return [StorageBackend(name={name!r}, factory=lambda o: MemoryStorage(), description="test")]
"""


def fake_distribution(
    root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str] | None = None
) -> None:
    """Write an installed-looking distribution (dist-info + modules) under ``root``."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[oddjob]\n{lines}\n")
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


def fake_store_distribution(root: Path, dist: str, entry_point: str, store: str) -> None:
    """A distribution whose plugin (module named after ``dist``) registers storage ``store``."""
    module = dist.replace("-", "_")
    fake_distribution(root, dist, {entry_point: module}, {module: STORE_MODULE.format(name=store)})


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_broken_plugin_is_reported_and_the_others_still_load(site: Path) -> None:
    fake_distribution(site, "oddjob-broken", {"broken": "oddjob_no_such_module_xyz"})
    registry = PluginRegistry()
    broken = [p for p in registry.plugins if p.name == "broken"]
    assert broken
    assert "import failed: ModuleNotFoundError" in (broken[0].error or "")
    assert "memory" in registry.storage_names()
    app = Oddjob(storage="memory", registry=registry)
    assert app.storage.name == "memory"


def test_selecting_a_broken_plugin_names_the_failure(site: Path) -> None:
    fake_distribution(site, "oddjob-broken", {"broken": "oddjob_no_such_module_xyz"})
    app = Oddjob(storage="broken", registry=PluginRegistry())
    with pytest.raises(
        BackendNotFound,
        match=r"'broken' is installed but its plugin failed to "
        r"load \(oddjob-broken: import failed",
    ):
        _ = app.storage


def test_two_distributions_registering_one_name_is_an_error_naming_both(site: Path) -> None:
    fake_store_distribution(site, "oddjob-dup-a", "dupa", store="dup")
    fake_store_distribution(site, "oddjob-dup-b", "dupb", store="dup")
    registry = PluginRegistry()
    with pytest.raises(
        PluginConflict,
        match=r"registered by oddjob-dup-a 1\.0 and "
        r"oddjob-dup-b 1\.0",
    ):
        registry.storage_backend("dup")
    assert registry.storage_backend("memory").name == "memory"  # unrelated names still work


def test_misspelled_hook_is_reported_as_invalid(site: Path) -> None:
    fake_distribution(
        site,
        "oddjob-typo",
        {"typo": "oddjob_typo_plugin"},
        {
            "oddjob_typo_plugin": """
            from oddjob_core import hookimpl

            @hookimpl
            def oddjob_job_succeded(claim, result, duration):
                pass
        """,
        },
    )
    registry = PluginRegistry()
    [typo] = [p for p in registry.plugins if p.name == "typo"]
    assert typo.error is not None
    assert "oddjob_job_succeded" in typo.error


def test_third_party_backend_is_selectable_by_name(site: Path) -> None:
    fake_store_distribution(site, "oddjob-thirdparty", "thirdparty", store="thirdparty")
    app = Oddjob(storage="thirdparty", registry=PluginRegistry())
    assert type(app.storage).__name__ == "MemoryStorage"


def test_plugins_command_lists_backends_versions_and_errors(site: Path) -> None:
    fake_distribution(site, "oddjob-broken", {"broken": "oddjob_no_such_module_xyz"})
    result = CliRunner().invoke(build_cli(PluginRegistry()), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["memory"]["storage"] == ["memory"]
    assert rows["memory"]["distribution"] == "oddjob-core"
    assert rows["threads"]["execution"] == ["threads", "processes"]
    assert rows["broken"]["error"].startswith("import failed")
    human = CliRunner().invoke(build_cli(PluginRegistry()), ["plugins"])
    assert "oddjob-broken" in human.output
    assert "import failed" in human.output


def test_a_raising_hook_does_not_silence_the_other_plugins() -> None:
    from oddjob_core import call, hookimpl
    from oddjob_core.testing import targets

    heard: list[int] = []

    class Broken:
        @hookimpl
        def oddjob_job_enqueued(self, jobs: object) -> None:
            raise RuntimeError("bug in a plugin")

    class Listening:
        @hookimpl
        def oddjob_job_enqueued(self, jobs: list[object]) -> None:
            heard.append(len(jobs))

    app = Oddjob(storage="memory", allowed_prefixes=["oddjob_core.testing.targets"])
    app.registry.pm.register(Listening())
    app.registry.pm.register(Broken())  # registered last: pluggy calls it first
    app.enqueue_many([call(targets.noop, 1), call(targets.noop, 2)])
    assert heard == [2]


def test_loading_the_plugins_does_not_import_pytest() -> None:
    """Every backend plugin imports oddjob_core.doctor; only running the doctor needs pytest."""
    import subprocess
    import sys

    probe = (
        "import sys; from oddjob_core import Oddjob; Oddjob(storage='memory').registry; "
        "print('pytest' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
