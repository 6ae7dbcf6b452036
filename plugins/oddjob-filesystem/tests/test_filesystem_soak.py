"""Four processes with short leases that expire on purpose, and every kind of outcome.

Afterwards every job exists exactly once, finished, and no job was ever claimed
while another process still held an unexpired lease on it without an outcome.
"""

from __future__ import annotations

import collections
import itertools
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from oddjob_filesystem import FilesystemOptions, FilesystemStorage, layout

from oddjob_core.model import Envelope, JobState
from oddjob_core.testing import make_envelope

WORKER = """
import json, random, sys, time
from oddjob_core.clock import utcnow
from oddjob_core.errors import LeaseLost
from oddjob_core.model import AttemptError
from oddjob_filesystem import FilesystemOptions, FilesystemStorage

path, name, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
nap = float(sys.argv[4]) if len(sys.argv) > 4 else 0.08  # share of jobs that outlive the lease
work = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0  # seconds each job runs
store = FilesystemStorage(FilesystemOptions(path=path, fsync=False, refresh_interval=0.02))
rng = random.Random(seed)
log = []
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    claims = store.claim("soak", 4, 0.3, name)
    if not claims:
        if store.next_due("soak") is None:
            break
        time.sleep(0.01)
        continue
    now = time.time()
    for c in claims:
        log.append(["claim", str(c.job.id), now, c.lease_expires_at.timestamp(),
                    c.job.attempts, c.recovered])
    for c in claims:
        r = rng.random()
        if rng.random() < nap:
            time.sleep(0.35)  # outlive the lease: another process recovers the job
        time.sleep(work)
        log.append(["end", str(c.job.id), time.time()])
        error = AttemptError(attempt=c.job.attempts, type="builtins.ValueError",
                             message="soak", at=utcnow())
        try:
            if r < 0.13:
                store.release([c])
            elif r < 0.45 and c.job.attempts < 3:
                store.retry(c, utcnow(), error)
            elif r < 0.55:
                store.fail(c, error)
            elif r < 0.75:
                store.complete(c, {"by": name})
            else:
                store.complete(c, None)
        except LeaseLost:
            log.append(["lost", str(c.job.id), time.time()])
print(json.dumps(log))
"""


def test_short_leases_and_every_outcome_keep_each_job_exactly_once(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    store = FilesystemStorage(FilesystemOptions(path=path, fsync=False))
    jobs = [make_envelope("soak", arguments={"i": i}) for i in range(300)]
    store.add(jobs)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, path, f"p{n}", str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    events: list[list[object]] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        events += json.loads(out)

    # every job is in exactly one file, and finished
    counts = assert_each_job_once_and_finished(Path(path), jobs, store)
    assert sum(counts.values()) == 300

    # a job is claimed again only after the previous claim ended or its lease expired
    per_job: dict[str, list[list[object]]] = collections.defaultdict(list)
    for event in events:
        per_job[str(event[1])].append(event)
    overlaps = []
    for job_id, job_events in per_job.items():
        job_events.sort(key=lambda e: float(e[2]))  # type: ignore[arg-type]
        claims = [e for e in job_events if e[0] == "claim"]
        for previous, current in itertools.pairwise(claims):
            ended = any(
                e[0] == "end" and float(previous[2]) <= float(e[2]) <= float(current[2])  # type: ignore[arg-type]
                for e in job_events
            )
            expired = float(current[2]) >= float(previous[3]) - 0.005  # type: ignore[arg-type]
            if not (ended or expired):
                overlaps.append(job_id)
    assert overlaps == [], "a job was claimed while another claim still held its lease"
    recovered = sum(1 for e in events if e[0] == "claim" and e[5])
    assert recovered >= 1, "no lease expired: the test did not exercise recovery"


def test_workers_killed_at_random_moments_lose_nothing(tmp_path: Path) -> None:
    """SIGKILL lands anywhere: in a claim, between claim and outcome, inside an outcome."""
    path = str(tmp_path / "store")
    store = FilesystemStorage(FilesystemOptions(path=path, fsync=False))
    jobs = [make_envelope("soak", arguments={"i": i}) for i in range(1500)]
    store.add(jobs)
    rng = random.Random(7)

    def start(n: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            # 3 ms per job: the drain lasts ~1.5 s however fast the host, so kills land in it
            [sys.executable, "-c", WORKER, path, f"p{n}", str(n), "0", "0.003"],
            stdout=subprocess.DEVNULL,
            text=True,
        )

    procs = [start(n) for n in range(3)]
    kills = 0
    for n in range(3, 15):
        time.sleep(rng.uniform(0.15, 0.4))
        victim = rng.randrange(len(procs))
        if procs[victim].poll() is None:
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait(10)
            kills += 1
        procs[victim] = start(n)
    for proc in procs:
        proc.wait(120)
    survivor = start(99)  # picks up whatever the last victims held
    assert survivor.wait(120) == 0

    counts = assert_each_job_once_and_finished(Path(path), jobs, store)
    print(f"\n{kills} workers SIGKILLed; final states {dict(counts)}; left in finishing/: none")
    assert kills >= 3, "the workers finished before they could be killed"


def assert_each_job_once_and_finished(
    path: Path, jobs: Sequence[Envelope], store: FilesystemStorage
) -> dict[JobState, int]:
    """Every job is in exactly one file, none lost, all finished; return the state counts."""
    base = path / "queues" / "soak"
    files = collections.Counter(
        layout.job_id_of(p.name) for p in base.rglob("*.job") if p.is_file()
    )
    assert {i for i, n in files.items() if n > 1} == set(), "a job exists twice"
    assert set(files) == {str(j.id) for j in jobs}, "a job was lost"
    counts: dict[JobState, int] = store.counts("soak")["soak"]
    assert set(counts) <= {JobState.SUCCEEDED, JobState.FAILED}, counts
    return counts
