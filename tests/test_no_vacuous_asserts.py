"""No assertion in the tests can pass whatever the code does (an AST scan of every test file).

Caught shapes: ``assert <literal>``, ``assert (x, "message")`` (a tuple is always
true), ``assert (check if cond else True)``, ``assert check or <truthy literal>``,
``assert <literal> == <literal>``. A scan cannot see every vacuous check (``"INFO"
not in log`` when INFO is never logged needs a reader), but it keeps these out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_FILES = sorted(
    {
        *ROOT.glob("tests/**/*.py"),
        *ROOT.glob("plugins/*/tests/**/*.py"),
        *ROOT.glob("examples/*/tests/**/*.py"),
        *ROOT.glob("oddjob_core/testing/*.py"),
    }
)


def _always_true(node: ast.expr) -> bool:
    """True when ``node`` holds whatever the values it reads are."""
    if isinstance(node, ast.Constant):
        return bool(node.value)
    if isinstance(node, ast.Tuple | ast.List | ast.Set | ast.Dict):
        return bool(node.elts if not isinstance(node, ast.Dict) else node.keys)
    if isinstance(node, ast.IfExp):
        return _always_true(node.body) or _always_true(node.orelse)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.Or):
            return any(_always_true(v) for v in node.values)
        return all(_always_true(v) for v in node.values)
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        return all(isinstance(o, ast.Constant) for o in operands)
    return False


def vacuous_asserts(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every assert in ``source`` that cannot fail."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assert) and _always_true(node.test):
            yield node.lineno, ast.unparse(node.test)


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_assertion_is_unconditionally_true(path: Path) -> None:
    found = list(vacuous_asserts(path.read_text()))
    assert found == [], f"{path.relative_to(ROOT)}: assertions that cannot fail: {found}"


@pytest.mark.parametrize(
    "source",
    [
        "assert True",
        "assert 'message'",
        "assert (x == 1, 'x is one')",
        "assert ('decoded' in m if errors else True)",
        "assert 'reconnected' in log or True",
        "assert 1 == 1",
    ],
)
def test_the_scan_finds_each_vacuous_shape(source: str) -> None:
    assert [text for _, text in vacuous_asserts(source)], source


@pytest.mark.parametrize(
    "source",
    [
        "assert x",
        "assert x == 1, 'x is one'",
        "assert a or b",
        "assert ('decoded' in m if errors else False)",
        "assert not x",
    ],
)
def test_the_scan_leaves_real_checks_alone(source: str) -> None:
    assert list(vacuous_asserts(source)) == []
