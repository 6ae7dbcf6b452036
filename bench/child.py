"""One measured case in a fresh process: ``python -m <module> --case <json>``, a JSON line back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def run_case(
    module: str,
    case: Any,
    *,
    paths: list[str] | None = None,
    prefix: list[str] | None = None,
    timeout: float = 900,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run ``module`` on ``case`` in a child (``paths`` first on its PYTHONPATH, ``prefix`` before
    the interpreter, e.g. ``taskset``); its last stdout line is the result, or ``{"error": ...}``.

    ``cwd`` (default: this repository) comes first on the child's ``sys.path``
    (``python -m``), before PYTHONPATH: a baseline tree must be its ``cwd``.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*(paths or [str(REPO)]), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [*(prefix or []), sys.executable, "-m", module, "--case", json.dumps(case)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
