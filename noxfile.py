"""Every workflow in one place: tests, lint, typecheck, build, installs, demo, bench.

Plugin folders (``plugins/*``) and example plugins (``examples/*``) are found
by listing them, so adding a plugin adds it to every session for free.
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("*") if (p / "pyproject.toml").exists())
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*") if (p / "pyproject.toml").exists())

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


def install_project(session: nox.Session, *, with_tests: bool = True) -> None:
    """Install the core and every plugin editable, each with its own test extras."""
    extra = "[test]" if with_tests else ""
    args = ["-e", f".{extra}"]
    for plugin in PLUGINS:
        args += ["-e", f"{plugin.relative_to(ROOT)}{extra}"]
    session.install(*args)


@nox.session
def tests(session: nox.Session) -> None:
    """Run every test: core, each plugin, and the example plugin installed as a wheel."""
    install_project(session)
    test_paths = ["tests", *(str(p.relative_to(ROOT) / "tests") for p in PLUGINS)]
    for example in EXAMPLES:
        wheel_dir = Path(session.create_tmp()) / "wheels" / example.name
        session.run(
            "python",
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheel_dir),
            str(example),
            silent=True,
        )
        wheels = sorted(wheel_dir.glob("*.whl"))
        session.install("--force-reinstall", "--no-deps", str(wheels[-1]))
        test_paths.append(str(example.relative_to(ROOT) / "tests"))
    session.run("pytest", *(session.posargs or [p for p in test_paths if Path(p).exists()]))


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing: does the storage suite catch small bugs planted in the memory store
    and the example plugin? Prints the kill rate and the survivors (slow: not run in CI).

    ``nox -s mutants -- memory`` (or ``example``, ``planted``; default all; ``-v`` per mutant).
    """
    install_project(session)
    session.install("--no-deps", *(str(example) for example in EXAMPLES))
    session.run("python", "tests/mutants/mutate.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check over the whole tree."""
    session.install("ruff>=0.17,<0.18")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on oddjob_core, every plugin package and the example plugin."""
    install_project(session)
    session.install("mypy>=1.10")
    session.run("mypy")
    for folder in [*PLUGINS, *EXAMPLES]:
        for package in sorted(folder.glob("oddjob_*/__init__.py")):
            session.run("mypy", "--strict", str(package.parent.relative_to(ROOT)))


@nox.session
def chaos(session: nox.Session) -> None:
    """Fault injection (poison jobs, SIGKILL, SIGSTOP, server restart, outage) on private
    PostgreSQL and RabbitMQ servers it starts itself: ``nox -s chaos`` (short, CI) or
    ``nox -s chaos -- --long``; prints a table and fails on any lost job or wrong outcome."""
    install_project(session)
    session.run("python", "-m", "chaos", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Enqueue a few jobs into a local folder store and watch a worker run them."""
    install_project(session, with_tests=False)
    session.run("python", "examples/demo/run.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with peer libraries (see bench/README.md); pass --quick for a short run."""
    install_project(session, with_tests=False)
    requirements = ROOT / "bench" / "requirements.txt"
    if requirements.exists():
        session.install("-r", str(requirements))
    if session.posargs[:1] == ["schedules"]:  # nox -s bench -- schedules [--seconds 125]
        session.run("python", "-m", "bench.schedules", *session.posargs[1:])
        return
    session.run("python", "-m", "bench", *session.posargs)


def build_distributions(session: nox.Session, out: Path, *, sdists: bool = True) -> list[Path]:
    """sdist + wheel (the wheel built from the sdist) of the core and every plugin into ``out``.

    ``sdists=False`` builds the wheels only, straight from the source folders.
    """
    session.install("build>=1.2", "hatchling>=1.25", "twine>=6.1")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("oddjob*"):
        old.unlink()
    for folder in [ROOT, *PLUGINS]:
        # --no-isolation: hatchling is installed above (the only build requirement), which
        # saves a fresh build environment per distribution.
        kinds = [] if sdists else ["--wheel"]
        session.run(
            "python", "-m", "build", "-q", "--no-isolation", *kinds, "-o", str(out), str(folder)
        )
    built = sorted(out.glob("oddjob*"))
    session.run("twine", "check", "--strict", *map(str, built))
    versions = {p.name.split("-")[1].removesuffix(".tar.gz") for p in built}
    if len(versions) != 1:
        session.error(f"distributions disagree on the version: {sorted(versions)}")
    if len(built) != (2 if sdists else 1) * (1 + len(PLUGINS)):
        session.error(
            f"expected an sdist and a wheel per distribution, got {[p.name for p in built]}"
        )
    return built


@nox.session
def build(session: nox.Session) -> None:
    """sdist + wheel of every distribution into dist/ (or the folder given), each passing twine check."""
    out = Path(session.posargs[0]).resolve() if session.posargs else ROOT / "dist"
    built = build_distributions(session, out)
    session.log(f"{len(built)} files in {out}")


@nox.session
def installs(session: nox.Session) -> None:
    """The README's install commands in fresh venvs, from freshly built wheels (tests/installs)."""
    wheels = Path(session.create_tmp()) / "dist"
    build_distributions(session, wheels, sdists=False)
    install_project(session)
    session.run(
        "pytest",
        "tests/installs",
        *session.posargs,
        env={"ODDJOB_TEST_WHEELS": str(wheels)},
    )
