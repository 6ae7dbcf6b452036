"""The threads executor passes the execution conformance suite."""

from __future__ import annotations

from oddjob_core.testing import ExecutorSuite


class TestThreadsExecutor(ExecutorSuite):
    executor_name = "threads"
