"""Mutation testing for storage backends: does the conformance suite notice a small bug?

Each mutant is one small change to one module (``<`` for ``<=``, ``and`` for ``or``,
a constant off by one, a call statement removed, a SQL ``DESC`` for ``ASC``...). The
mutated module is written into a copy of its package in a temp folder that comes first
on ``PYTHONPATH``, and the suite runs against it in a fresh process: a failing run
kills the mutant, a passing one is a survivor (a bug the suite would miss, or an
equivalent change). ``planted.py`` holds hand-written bugs (the ones issue #11 found
missed) that must all be killed.

    python tests/mutants/mutate.py memory      # oddjob_core/memory/store.py
    python tests/mutants/mutate.py example     # the example plugin's storage.py
    python tests/mutants/mutate.py planted     # the hand-planted bugs, example plugin
    python tests/mutants/mutate.py all --jobs 2 --min-kill-rate 95

``nox -s mutants`` runs it. A sabotaged module (every ``add`` raises) is run first:
if the suite does not fail on it, the mutants are not being imported and the run stops.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from planted import PLANTED  # noqa: E402


@dataclass(frozen=True)
class Target:
    """A module to mutate: its package folder, its path inside it, the suite that guards it."""

    name: str
    package: Path  # the import package folder, copied whole for each mutant
    module: str  # path of the mutated file inside ``package``
    suite: tuple[str, ...]  # pytest arguments: the test files that must kill mutants


TARGETS = {
    "memory": Target(
        "memory",
        ROOT / "oddjob_core",
        "memory/store.py",
        # the storage suite, plus the worker-registry and history suites on the same store
        (
            str(ROOT / "tests" / "test_memory_storage.py"),
            str(ROOT / "tests" / "test_worker_registry.py"),
        ),
    ),
    "example": Target(
        "example",
        ROOT / "examples" / "oddjob-example-sqlite" / "oddjob_example_sqlite",
        "storage.py",
        (str(ROOT / "examples" / "oddjob-example-sqlite" / "tests" / "test_conformance.py"),),
    ),
}


#: Mutants that cannot change what the contract promises, with the reason. Keyed by
#: (module, the mutated source line stripped, the mutation), so line moves keep them.
#: They are reported apart and left out of the kill rate.
EQUIVALENT: dict[tuple[str, str, str], str] = {
    ("memory/store.py", "version: int = 0  # bumps whenever the row leaves the waiting heap entry it had", "0 -> 1"): "versions are only compared for equality with the row's own",
    ("memory/store.py", "self._tokens = itertools.count(1)", "1 -> 0"): "any distinct token values work",
    ("memory/store.py", "self._tokens = itertools.count(1)", "1 -> 2"): "any distinct token values work",
    ("memory/store.py", "state = JobState.SCHEDULED if env.run_at > now else JobState.READY", "> -> >="): "only a run_at equal to add's own now (to the microsecond) is labelled scheduled instead of ready; both are waiting and due",
    ("memory/store.py", "while leases and len(claims) < limit and leases[0][0] <= now:", "<= -> <"): "a lease expiring at exactly this microsecond is recovered by the next claim",
    ("memory/store.py", "if row.lease_expires_at is not None and row.lease_expires_at > now:", "> -> >="): "only an extended lease expiring at exactly this microsecond waits for the next claim",
    ("memory/store.py", "if run_at > now:", "> -> >="): "a job due at exactly this microsecond is claimed by the next claim",
    ("memory/store.py", "heapq.heappop(waiting)", "call statement removed"): "the claimed row's heap entry is dropped as stale on the next look (its version moved on)",
    ("memory/store.py", "row.version += 1", "1 -> 2"): "versions are only compared for equality",
    ("memory/store.py", "row.version += 1", "1 -> 0"): "heap entries of a row that left the waiting states are also dropped by the state check",
    ("memory/store.py", "and row.finished_at >= since", ">= -> >"): "only a job finished at exactly since (to the microsecond) drops out of the minute counts",
    ("memory/store.py", "and (older_than is None or row.updated_at < older_than)", "< -> <="): "only a job updated at exactly older_than (to the microsecond) is purged too",
}  # fmt: skip


def equivalent_reason(mutant: Mutant) -> str | None:
    """Why ``mutant`` is equivalent, if it is listed in ``EQUIVALENT``."""
    lines = (mutant.target.package / mutant.target.module).read_text().splitlines()
    text = lines[mutant.line - 1].strip() if 0 < mutant.line <= len(lines) else ""
    return EQUIVALENT.get((mutant.target.module, text, mutant.description))


@dataclass(frozen=True)
class Mutant:
    """One changed copy of a module's source, described for the report."""

    target: Target
    line: int
    description: str
    source: str


# -- generating mutants --------------------------------------------------------------

_COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
}
_NAME_SWAPS = {"min": "max", "max": "min"}
#: SQL fragments and their mutations, applied to string constants that hold SQL
_SQL_SWAPS = [
    (r"<=", "<"),
    (r"(?<![<>])<(?![=>])", "<="),
    (r">=", ">"),
    (r"(?<![<>])>(?!=)", ">="),
    (r"\bDESC\b", "ASC"),
    (r"\bAND\b", "OR"),
    (r"\bIS NULL\b", "IS NOT NULL"),
]
_SQL = re.compile(r"\b(SELECT|UPDATE|INSERT|DELETE|WHERE|ORDER BY)\b")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (never mutated)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _annotations(tree: ast.AST) -> set[int]:
    """ids of every node inside a type annotation (never mutated)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        parts: list[ast.AST | None] = []
        if isinstance(node, ast.AnnAssign | ast.arg):
            parts.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            parts.append(node.returns)
        for part in parts:
            if part is not None:
                found.update(id(n) for n in ast.walk(part))
    return found


def _declarations(tree: ast.AST) -> set[int]:
    """ids of the nodes of a ``capabilities = Capabilities(...)`` declaration (never mutated).

    Declaring a capability missing turns its tests into visible skips: a weaker claim,
    not a contract bug the suite could catch.
    """
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "capabilities" for t in targets):
                found.update(id(n) for n in ast.walk(node))
    return found


def _variants(node: ast.AST, skip: set[int]) -> Iterator[tuple[str, ast.AST | None]]:
    """Each way to mutate ``node``: (description, replacement node; None = delete statement)."""
    if id(node) in skip:
        return
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            swap = _COMPARE_SWAPS.get(type(op))
            if swap is not None:
                new = copy.deepcopy(node)
                new.ops[i] = swap()
                yield f"{_op(op)} -> {_op(swap())}", new
    elif isinstance(node, ast.BoolOp):
        new = copy.deepcopy(node)
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        yield f"{_op(node.op)} -> {_op(new.op)}", new
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not x -> x", copy.deepcopy(node.operand)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield "-x -> x", copy.deepcopy(node.operand)
    elif isinstance(node, ast.BinOp):
        swap_op = _BINOP_SWAPS.get(type(node.op))
        if swap_op is not None:
            new = copy.deepcopy(node)
            new.op = swap_op()
            yield f"{_op(node.op)} -> {_op(new.op)}", new
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            yield f"{value} -> {not value}", ast.Constant(not value)
        elif isinstance(value, int):
            yield f"{value} -> {value + 1}", ast.Constant(value + 1)
            if value != 0:
                yield f"{value} -> 0", ast.Constant(0)
        elif isinstance(value, str) and _SQL.search(value):
            for pattern, replacement in _SQL_SWAPS:
                for match in re.finditer(pattern, value):
                    text = value[: match.start()] + replacement + value[match.end() :]
                    yield f"SQL {match.group(0)!r} -> {replacement!r}", ast.Constant(text)
    elif isinstance(node, ast.Name) and node.id in _NAME_SWAPS:
        yield f"{node.id} -> {_NAME_SWAPS[node.id]}", ast.Name(_NAME_SWAPS[node.id], node.ctx)
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        yield "call statement removed", None
    elif isinstance(node, ast.Continue | ast.Break):
        yield f"{type(node).__name__.lower()} removed", None


def _op(op: ast.AST) -> str:
    names = {
        ast.Lt: "<",
        ast.LtE: "<=",
        ast.Gt: ">",
        ast.GtE: ">=",
        ast.Eq: "==",
        ast.NotEq: "!=",
        ast.Is: "is",
        ast.IsNot: "is not",
        ast.In: "in",
        ast.NotIn: "not in",
        ast.And: "and",
        ast.Or: "or",
        ast.Add: "+",
        ast.Sub: "-",
        ast.Mult: "*",
        ast.FloorDiv: "//",
    }
    return names.get(type(op), type(op).__name__)


class _Replace(ast.NodeTransformer):
    """Replace the ``index``-th node of a walk (same order as in ``mutants``)."""

    def __init__(self, index: int, replacement: ast.AST | None) -> None:
        self.index = index
        self.replacement = replacement
        self.count = -1

    def visit(self, node: ast.AST) -> ast.AST | None:
        self.count += 1
        if self.count == self.index:
            if self.replacement is None:
                return ast.Pass()
            return ast.copy_location(self.replacement, node)
        return super().visit(node)


def _walk(tree: ast.AST) -> Iterator[ast.AST]:
    """Depth-first pre-order, the order ``_Replace`` counts in."""
    yield tree
    for child in ast.iter_child_nodes(tree):
        yield from _walk(child)


def mutants(target: Target) -> list[Mutant]:
    """Every single-change mutant of ``target``'s module, in source order."""
    source = (target.package / target.module).read_text()
    tree = ast.parse(source)
    skip = _docstrings(tree) | _annotations(tree) | _declarations(tree)
    found: list[Mutant] = []
    for index, node in enumerate(_walk(tree)):
        for description, replacement in _variants(node, skip):
            mutated = _Replace(index, replacement).visit(copy.deepcopy(tree))
            assert mutated is not None
            text = ast.unparse(ast.fix_missing_locations(mutated))
            line = getattr(node, "lineno", 0)
            found.append(Mutant(target, line, description, text))
    return found


def planted(target: Target) -> list[Mutant]:
    """The hand-planted bugs of ``planted.PLANTED`` (each must still apply to the source)."""
    source = (target.package / target.module).read_text()
    found: list[Mutant] = []
    for bug in PLANTED:
        text = source
        for old, new in bug.edits:
            if text.count(old) != 1:
                raise SystemExit(
                    f"planted bug {bug.name!r}: {old!r} is not found exactly once in "
                    f"{target.module}; update tests/mutants/planted.py"
                )
            text = text.replace(old, new)
        line = source[: source.index(bug.edits[0][0])].count("\n") + 1
        found.append(Mutant(target, line, bug.name, text))
    return found


def sabotage(target: Target) -> Mutant:
    """A mutant every suite must kill: ``add`` raises at once."""
    source = (target.package / target.module).read_text()
    marker = "    def add(self, jobs: Sequence[Envelope]) -> None:\n"
    if marker not in source:
        raise SystemExit(f"cannot sabotage {target.module}: no add() found")
    broken = source.replace(marker, marker + "        raise RuntimeError('sabotaged')\n", 1)
    return Mutant(target, 0, "sabotage: add raises", broken)


# -- running them ------------------------------------------------------------------------


def run(mutant: Mutant, timeout: float) -> tuple[bool, float]:
    """Run the suite against ``mutant``; (killed, seconds)."""
    target = mutant.target
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="oddjob-mutant-") as tmp:
        package = Path(tmp) / target.package.name
        shutil.copytree(
            target.package, package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        (package / target.module).write_text(mutant.source)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")]),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        command = [
            sys.executable,
            "-c",
            "import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "timeout=30",
            "--rootdir",
            str(ROOT),
            *target.suite,
        ]
        try:
            done = subprocess.run(
                command, cwd=tmp, env=env, capture_output=True, timeout=timeout, check=False
            )
            killed = done.returncode != 0
        except subprocess.TimeoutExpired:
            killed = True  # a hang is a failure the suite shows (its own timeout)
    return killed, time.monotonic() - started


def run_all(
    name: str, found: list[Mutant], jobs: int, timeout: float, *, verbose: bool = False
) -> tuple[list[Mutant], float]:
    """Run every mutant, print the kill rate and the survivors; return them and the rate."""
    started = time.monotonic()
    done: list[int] = []

    def one(mutant: Mutant) -> tuple[bool, float]:
        killed, seconds = run(mutant, timeout)
        done.append(1)
        if verbose:
            verdict = "killed" if killed else "SURVIVED"
            print(
                f"  [{len(done)}/{len(found)}] {verdict} in {seconds:.0f} s: "
                f"{mutant.target.module}:{mutant.line}: {mutant.description}",
                flush=True,
            )
        return killed, seconds

    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(one, found))
    lived = [m for m, (killed, _) in zip(found, results, strict=True) if not killed]
    equivalent = [(m, reason) for m in lived if (reason := equivalent_reason(m))]
    survivors = [m for m in lived if not equivalent_reason(m)]
    counted = len(found) - len(equivalent)
    killed = counted - len(survivors)
    rate = 100.0 * killed / counted if counted else 100.0
    print(
        f"{name}: {killed}/{counted} mutants killed ({rate:.1f} %; {len(equivalent)} equivalent "
        f"left out of {len(found)}) in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    for mutant, reason in equivalent:
        print(f"  equivalent: {mutant.target.module}:{mutant.line}: {mutant.description}: {reason}")
    for mutant in survivors:
        print(f"  SURVIVED: {mutant.target.module}:{mutant.line}: {mutant.description}")
    return survivors, rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["memory", "example", "planted", "all"], nargs="?")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run side by side")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per suite run")
    parser.add_argument(
        "--min-kill-rate", type=float, default=95.0, help="for memory (percent); exit 1 below"
    )
    parser.add_argument("--list", action="store_true", help="only list the mutants")
    parser.add_argument("--verbose", "-v", action="store_true", help="a line per mutant run")
    parser.add_argument(
        "--lines", default="", help="only mutants on these source lines (e.g. 88,111)"
    )
    args = parser.parse_args(argv)
    what = args.what or "all"
    failed = False
    for name in ["memory", "example", "planted"] if what == "all" else [what]:
        target = TARGETS["example" if name == "planted" else name]
        found = planted(target) if name == "planted" else mutants(target)
        if args.lines:
            wanted = {int(n) for n in args.lines.split(",")}
            found = [m for m in found if m.line in wanted]
        if args.list:
            for m in found:
                print(f"{name}: {m.target.module}:{m.line}: {m.description}")
            continue
        killed, _ = run(sabotage(target), args.timeout)
        if not killed:
            print(f"{name}: the suite passed against a sabotaged module: mutants are not used")
            return 2
        survivors, rate = run_all(name, found, args.jobs, args.timeout, verbose=args.verbose)
        if name == "planted" and survivors:
            print("planted: every planted bug must be caught by the suite")
            failed = True
        if name == "memory" and rate < args.min_kill_rate:
            print(f"memory: kill rate below {args.min_kill_rate:g} %")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
