"""The plugin author's guide cannot drift from the hookspecs, and its middleware example works.

``docs/writing-plugins.md`` has a "Hook reference" section with one ``### oddjob_xxx``
heading per hook in ``oddjob_core/hookspecs.py``. These tests fail when a hook is
added without documentation or a docstring, or when the guide names a hook that
does not exist (renamed or removed).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from oddjob_core import Oddjob, hookspecs
from oddjob_core.model import JobState, RetryPolicy
from oddjob_core.testing import targets

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "writing-plugins.md"
MIDDLEWARE_MARKER = "# docs-example: timing-middleware"


def hook_names() -> set[str]:
    """Every hookspec: functions of the hookspecs module carrying pluggy's spec marker."""
    return {
        name
        for name, obj in vars(hookspecs).items()
        if name.startswith("oddjob_")
        and getattr(obj, f"{hookspecs.PROJECT}_spec", None) is not None
    }


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def reference_section(text: str) -> str:
    """The text from the "Hook reference" heading to the next level-2 heading."""
    match = re.search(r"^## Hook reference\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"{GUIDE} has no '## Hook reference' section"
    return match.group(1)


def package_names() -> set[str]:
    """Import packages of this repo (oddjob_core, oddjob_<plugin>...): not hook names."""
    folders = [*ROOT.glob("plugins/oddjob-*"), *ROOT.glob("examples/oddjob-*")]
    return {"oddjob_core"} | {f.name.replace("-", "_") for f in folders}


def test_the_hookspecs_module_defines_hooks() -> None:
    assert {"oddjob_storage_backends", "oddjob_run_job", "oddjob_cli"} <= hook_names()


@pytest.mark.parametrize("name", sorted(hook_names()))
def test_every_hook_has_a_docstring(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc, (
        f"hookspec {name} in oddjob_core/hookspecs.py has no docstring; say when it is called and what it returns"
    )


@pytest.mark.parametrize("name", sorted(hook_names()))
def test_every_hook_is_in_the_guide_reference(name: str) -> None:
    headings = re.findall(r"^### (\S+)", reference_section(guide()), re.MULTILINE)
    assert name in headings, (
        f"hook {name} is not documented: add a '### {name}' heading under "
        f"'## Hook reference' in {GUIDE.relative_to(ROOT)}"
    )


def test_reference_headings_name_existing_hooks_only() -> None:
    headings = re.findall(r"^### (\S+)", reference_section(guide()), re.MULTILINE)
    unknown = sorted(set(headings) - hook_names())
    assert not unknown, (
        f"{GUIDE.relative_to(ROOT)} documents hooks that oddjob_core/hookspecs.py does not "
        f"define: {', '.join(unknown)}"
    )
    assert len(headings) == len(set(headings)), "a hook is documented twice"


def test_the_guide_names_no_hook_that_does_not_exist() -> None:
    known = hook_names() | package_names()
    mentioned = set(re.findall(r"(?<![\w.])oddjob_[a-z_]+[a-z]", guide()))
    unknown = sorted(mentioned - known)
    assert not unknown, (
        f"{GUIDE.relative_to(ROOT)} mentions {', '.join(unknown)}, which is neither a hook in "
        "oddjob_core/hookspecs.py nor a package of this repository"
    )


# -- the timing middleware from the guide, run for real -------------------------------


def middleware_from_guide() -> Any:
    """Execute the guide's timing-middleware code block and return its class."""
    blocks = re.findall(r"```python\n(.*?)```", guide(), re.DOTALL)
    [source] = [b for b in blocks if MIDDLEWARE_MARKER in b]
    namespace: dict[str, Any] = {"__name__": "docs_timing_middleware"}
    exec(compile(source, f"{GUIDE}:timing-middleware", "exec"), namespace)
    return namespace["TimingMiddleware"]


def test_timing_middleware_from_the_guide_wraps_every_job() -> None:
    targets.reset()
    middleware = middleware_from_guide()()
    with Oddjob(storage="memory", allowed_prefixes=["oddjob_core.testing.targets"]) as app:
        app.registry.pm.register(middleware)
        ok = app.enqueue(targets.noop)
        doomed = app.options(retry=RetryPolicy(max_retries=0)).enqueue(
            targets.raise_value_error, "timed"
        )
        app.run_worker(burst=True, handle_signals=False)
        assert app.get(ok).state is JobState.SUCCEEDED
        assert app.get(doomed).state is JobState.FAILED
    seen = {target: (attempt, seconds, ok) for target, attempt, seconds, ok in middleware.timings}
    assert set(seen) == {
        "oddjob_core.testing.targets:noop",
        "oddjob_core.testing.targets:raise_value_error",
    }
    assert seen["oddjob_core.testing.targets:noop"][0] == 1
    assert seen["oddjob_core.testing.targets:noop"][2] is True
    assert seen["oddjob_core.testing.targets:raise_value_error"][2] is False  # raised: still timed
    assert all(seconds >= 0 for _, seconds, _ in seen.values())
