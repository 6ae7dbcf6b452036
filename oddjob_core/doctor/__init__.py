"""``oddjob doctor``: prove the configured backend on the user's own server, in a namespace of its own.

It runs the storage conformance suite (``oddjob_core.testing.StorageSuite``)
and a worker smoke test against the configured backend with its options
pointed at a private namespace (see ``isolation``), removes that namespace
afterwards and prints a report with timings and the server's settings.
"""

from .isolation import DoctorSupport, Isolation, isolate
from .report import Check, Report
from .run import run_doctor

__all__ = ["Check", "DoctorSupport", "Isolation", "Report", "isolate", "run_doctor"]
