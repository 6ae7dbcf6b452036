"""When a burst run (``oddjob worker --burst``) is done: the rule every executor shares."""

from __future__ import annotations

import time
from datetime import datetime

#: the CLI's ``--burst-wait`` default: a retry due a moment later is not left behind
DEFAULT_BURST_WAIT = 1.0
#: seconds beyond the wait an idle burst run still gives a job that was due within it
#: (a delayed job travels from a broker's delay queue to its work queue meanwhile)
GRACE = 2.0


class BurstClock:
    """Decides, each time a queue finds nothing to claim, whether a burst run may stop.

    Done when nothing runs and no job is due within ``wait`` seconds. A backend
    that cannot see when its waiting jobs are due answers ``next_due`` with "soon"
    again and again (RabbitMQ's delay ladder holding jobs of other processes); so
    a run that has been idle for longer than ``wait`` plus a grace is done too:
    any job due within the wait would have been claimed by then.
    """

    def __init__(self, wait: float, grace: float = GRACE) -> None:
        self.wait = wait
        self.grace = grace
        self._idle_since: float | None = None

    def done(self, idle: bool, next_due: datetime | None, now: datetime) -> bool:
        """``idle``: nothing claimed, running or being recorded. ``next_due``: the store's answer."""
        if not idle:
            self._idle_since = None
            return False
        mono = time.monotonic()
        if self._idle_since is None:
            self._idle_since = mono
        if next_due is None or (next_due - now).total_seconds() > self.wait:
            return True
        return mono - self._idle_since > self.wait + self.grace

    def busy(self) -> None:
        """A claim returned jobs: the idle stretch, if any, is over."""
        self._idle_since = None
