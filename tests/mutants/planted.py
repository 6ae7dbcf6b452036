"""Bugs planted by hand in the example plugin's storage: each must fail the conformance suite.

These are the bugs issue #11 found the suite missed in a third-party backend, written
into ``examples/oddjob-example-sqlite/oddjob_example_sqlite/storage.py``. Each is a
list of (text, replacement) edits; ``mutate.py planted`` applies one bug at a time and
runs the example plugin's conformance tests, which must fail for every one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bug:
    """One planted bug: a name for the report and the edits that make it."""

    name: str
    edits: tuple[tuple[str, str], ...]


PLANTED = [
    Bug(
        "a succeeded job is claimed again once its old lease time passes",
        (
            # outcomes leave the lease time behind, and the expired-lease query trusts it alone
            ('"lease_expires_at = NULL, token = NULL "\n                "WHERE id', '"token = NULL "\n                "WHERE id'),
            ("WHERE queue = ? AND state = 'running' \"\n            \"AND lease_expires_at <= ?", "WHERE queue = ? \"\n            \"AND lease_expires_at <= ?"),
        ),
    ),
    Bug(
        "re-adding an existing job id overwrites and resets the stored job",
        (("INSERT OR IGNORE INTO jobs", "INSERT OR REPLACE INTO jobs"),),
    ),
    Bug(
        "requeue(run_at=<future>) ignores the time",
        (("        due = run_at or now\n", "        due = now\n"),),
    ),
    Bug(
        "requeue wipes the job's past errors",
        (("replace(env, run_at=due, attempts=0)", "replace(env, run_at=due, attempts=0, errors=())"),),
    ),
    Bug(
        "search ignores created_after",
        (('("created_at", ">=", query.created_after and to_us(query.created_after)),\n', ""),),
    ),
    Bug(
        "the FIFO tie-break among equal priority and run_at is reversed",
        (("ORDER BY priority DESC, run_at, id LIMIT ?", "ORDER BY priority DESC, run_at, id DESC LIMIT ?"),),
    ),
    Bug(
        "next_due ignores the lease expiry of running jobs",
        (("UNION ALL SELECT min(lease_expires_at) FROM jobs", "UNION ALL SELECT NULL FROM jobs"),),
    ),
]  # fmt: skip
