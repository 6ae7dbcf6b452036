"""``oddjob doctor``: prove the configured backend on the user's own server, in a namespace of its own.

It runs the storage conformance suite (``oddjob_core.testing.StorageSuite``)
and a worker smoke test against the configured backend with its options
pointed at a private namespace (see ``isolation``), removes that namespace
afterwards and prints a report with timings and the server's settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .isolation import DoctorSupport, Isolation, isolate
from .report import Check, Report

if TYPE_CHECKING:
    from .run import run_doctor


def __getattr__(name: str) -> Any:
    """``run_doctor`` is imported on first use: it imports pytest (~0.1 s), and every backend
    plugin imports this package (for ``DoctorSupport``) whenever the app loads its plugins."""
    if name == "run_doctor":
        from .run import run_doctor

        return run_doctor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Check", "DoctorSupport", "Isolation", "Report", "isolate", "run_doctor"]
