"""Run the installed ``oddjob`` console script in a subprocess, as a user does (not CliRunner)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ODDJOB = str(Path(sys.executable).with_name("oddjob"))


def oddjob(
    *args: str,
    cwd: Path,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``oddjob ARGS`` in ``cwd`` with no PYTHONPATH and no ODDJOB_* variables of the test run."""
    clean = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("ODDJOB_")
    }
    clean.update(env or {})
    return subprocess.run(
        [ODDJOB, *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text if input_text is not None else "",
    )


def project(root: Path, config: str = 'imports = ["myapp.jobs"]\n') -> Path:
    """A user's project folder: ``myapp/jobs.py`` with a few jobs and an ``oddjob.toml``."""
    (root / "myapp").mkdir(parents=True, exist_ok=True)
    (root / "myapp" / "__init__.py").write_text("")
    (root / "myapp" / "jobs.py").write_text(
        textwrap.dedent(
            """
            from decimal import Decimal

            from oddjob_core import job


            @job
            def hello(name: str) -> str:
                return "hi " + name


            @job
            def boom(reason: str) -> None:
                raise ValueError(reason)


            @job
            def total(price: Decimal, count: int) -> Decimal:
                return price * count


            @job
            def flaky(marker: str) -> str:
                # fails the first time (creating the marker file), succeeds after
                import os

                if not os.path.exists(marker):
                    open(marker, "w").close()
                    raise RuntimeError("first attempt fails")
                return "second time lucky"


            def _log(line: str) -> None:
                print(line)
            """
        )
    )
    (root / "oddjob.toml").write_text(config + '[filesystem]\npath = "store"\n')
    return root
