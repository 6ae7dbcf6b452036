"""Job targets for the dashboard tests (imported through ``monkeypatch.syspath_prepend``)."""

from __future__ import annotations

from pathlib import Path


def fail_until(flag: str, note: str) -> str:
    """Fail (with markup in the message) until the file ``flag`` exists, then succeed."""
    if not Path(flag).exists():
        raise RuntimeError(f"<b>not yet</b>: {flag} is missing")
    return f"done: {note}"


def show(text: str) -> int:
    """Succeed with the length of ``text`` (the XSS probe's target)."""
    return len(text)
