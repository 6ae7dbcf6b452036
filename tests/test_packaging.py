"""Release metadata of every distribution: one version, a matching core pin, what an index page shows.

``nox -s build`` builds and ``twine check``s the files; this test keeps the
sources honest on every run (a new plugin that copies an old pyproject.toml
fails here, with the line to change).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("*") if (p / "pyproject.toml").exists())
URLS = {"Homepage", "Documentation", "Source", "Changelog", "Issues"}


def project(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((folder / "pyproject.toml").read_text())
    return data


CORE = project(ROOT)
VERSION = CORE["project"]["version"]


def next_minor(version: str) -> str:
    major, minor = (int(part) for part in version.split(".")[:2])
    return f"{major}.{minor + 1}" if major == 0 else f"{major + 1}.0"


@pytest.mark.parametrize("folder", [ROOT, *PLUGINS], ids=lambda p: p.name)
def test_distribution_metadata_is_release_ready(folder: Path) -> None:
    meta = project(folder)["project"]
    where = f"{folder.relative_to(ROOT) if folder != ROOT else '.'}/pyproject.toml"
    assert meta["version"] == VERSION, (
        f"{where}: version {meta['version']}, the core's is {VERSION}"
    )
    assert meta.get("readme") == "README.md", where
    assert (folder / "README.md").exists(), where
    assert meta.get("license") == "MIT", where
    assert meta.get("requires-python") == CORE["project"]["requires-python"], where
    assert set(meta.get("urls", {})) >= URLS, f"{where}: [project.urls] needs {sorted(URLS)}"
    classifiers = meta.get("classifiers", [])
    assert any(c.startswith("Development Status") for c in classifiers), where
    assert "Programming Language :: Python :: 3 :: Only" in classifiers, where


@pytest.mark.parametrize("folder", PLUGINS, ids=lambda p: p.name)
def test_plugin_requires_the_core_of_its_own_release(folder: Path) -> None:
    pin = f"oddjob-core>={VERSION},<{next_minor(VERSION)}"
    deps = project(folder)["project"]["dependencies"]
    core = [d for d in deps if re.match(r"oddjob-core\b", d)]
    assert core == [pin], f"plugins/{folder.name}/pyproject.toml: depend on '{pin}', not {core}"


def test_core_wheel_carries_and_registers_the_defaults() -> None:
    """`pip install oddjob-core` alone must run the no-configuration default: filesystem + threads."""
    entry_points = CORE["project"]["entry-points"]["oddjob"]
    packages = CORE["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    sdist = CORE["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    for name in ("threads", "filesystem"):
        assert entry_points[name] == f"oddjob_{name}.plugin"
        source = f"plugins/oddjob-{name}/oddjob_{name}"
        assert source in packages
        assert source in sdist
        shim = project(ROOT / "plugins" / f"oddjob-{name}")
        assert "entry-points" not in shim["project"], (
            f"oddjob-{name} must not register '{name}' twice"
        )
        assert shim["tool"]["hatch"]["build"]["targets"]["wheel"]["exclude"] == ["*"]


def test_changelog_has_a_section_for_the_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(VERSION)}\]", changelog, re.M), (
        f"CHANGELOG.md has no '## [{VERSION}]' section"
    )


def test_oddjob_version_lists_the_core_and_every_plugin() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oddjob_core", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"oddjob-core {VERSION} (Python "), lines[0]
    listed = {line.split()[0]: line.split()[1:3] for line in lines[2:]}
    assert listed["threads"] == ["oddjob-core", VERSION]
    assert listed["filesystem"] == ["oddjob-core", VERSION]
    assert listed["memory"] == ["oddjob-core", VERSION]
    for folder in PLUGINS:
        name = folder.name.removeprefix("oddjob-")
        if name not in ("threads", "filesystem"):
            assert listed.get(name) == [folder.name, VERSION], done.stdout
