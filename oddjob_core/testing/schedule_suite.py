"""A process test for schedules: mix ``ScheduleWorkerSuite`` into a ``WorkerSuite`` subclass.

Three real worker processes hold a schedule ``every = "1s"``; one is SIGKILLed
midway and restarted. Every second in the window must run exactly once: no tick
lost (the others kept enqueueing) and none twice (the store kept one job per
tick id). ``ODDJOB_SCHEDULE_SOAK_SECONDS`` sets the window (default 20).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

from . import targets
from .workers import WorkerProcesses, settings_env, wait_for


def tick_second(job_id: str) -> int:
    """The tick instant (whole Unix seconds) a tick's job id encodes (UUIDv7 timestamp)."""
    return (uuid.UUID(job_id).int >> 80) // 1000


class ScheduleWorkerSuite:
    """One job per tick with several schedulers, one of them killed."""

    def test_three_workers_one_killed_run_every_tick_once(
        self, workers: WorkerProcesses, tmp_path: Path
    ) -> None:
        seconds = int(os.environ.get("ODDJOB_SCHEDULE_SOAK_SECONDS", "20"))
        lines = tmp_path / "ticks.txt"
        schedule = settings_env(
            {
                "schedules": {
                    "soak": {
                        "target": f"{targets.__name__}:count_run",
                        "every": "1s",
                        "args": [str(lines)],
                    }
                }
            }
        )
        start = [workers.start("--workers", "2", extra_env=schedule) for _ in range(3)]
        assert wait_for(lambda: lines.exists() and bool(lines.read_text().strip()), 90), (
            workers.log(0)
        )
        t0 = int(time.time()) + 2
        time.sleep(max(0.0, t0 + seconds / 2 - time.time()))
        start[0].send_signal(signal.SIGKILL)
        start[0].wait(10)
        workers.start("--workers", "2", extra_env=schedule)
        window = range(t0, t0 + seconds)

        def ran() -> list[int]:
            return [tick_second(i) for i in lines.read_text().split()]

        assert wait_for(lambda: max(ran()) >= window[-1], seconds + 60), workers.log(1)
        time.sleep(2)  # a tick claimed by the killed worker runs again after its lease
        counts = Counter(s for s in ran() if s in window)
        twice = sum(1 for n in counts.values() if n > 1)
        print(f"schedule soak: {len(counts)} of {seconds} ticks run, {twice} run twice")
        assert twice == 0, counts
        assert abs(len(counts) - seconds) <= 1, (sorted(set(window) - set(counts)), workers.log(1))
