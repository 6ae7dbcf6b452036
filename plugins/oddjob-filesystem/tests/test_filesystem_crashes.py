"""Crashes between claim and outcome, half-recorded outcomes, and corrupt files on disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest
from oddjob_filesystem import FilesystemOptions, FilesystemStorage, layout, recovery

from oddjob_core.model import JobQuery, JobState
from oddjob_core.testing import make_envelope
from oddjob_core.testing.suite_base import add_and_claim, wait_until_claimed


def open_store(path: Path, **options: object) -> FilesystemStorage:
    return FilesystemStorage(FilesystemOptions(path=str(path), **options))  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FilesystemStorage:
    """A store that looks for orphaned outcomes on every claim, with no grace period."""
    monkeypatch.setattr(recovery, "ORPHAN_GRACE", 0.0)
    monkeypatch.setattr(recovery, "ORPHAN_SCAN_EVERY", 0.0)
    return open_store(tmp_path)


def running_files(store: FilesystemStorage, queue: str) -> list[Path]:
    return sorted((store.root / "queues" / queue / "running").glob("*.job"))


CLAIM_THEN_HANG = """
import sys, time
from oddjob_filesystem import FilesystemOptions, FilesystemStorage
store = FilesystemStorage(FilesystemOptions(path=sys.argv[1]))
[claim] = store.claim("crash", 1, float(sys.argv[2]), "victim")
if sys.argv[3] == "finishing":
    store.folders.fence(claim)  # an outcome half recorded: the file sits in finishing/
print(claim.token, flush=True)
time.sleep(600)
"""


def start_victim(path: Path, lease: float, stage: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CLAIM_THEN_HANG, str(path), str(lease), stage],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip(), "the victim claimed nothing"
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def test_job_file_survives_sigkill_between_claim_and_outcome(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    env = make_envelope("crash", arguments={"n": 7, "s": "kept"})
    store.add([env])
    victim = start_victim(tmp_path, 1.0, "running")
    kill(victim)

    [left] = running_files(store, "crash")
    assert "victim" in left.name
    stored = msgspec.json.decode(left.read_bytes())
    assert stored["envelope"]["arguments"] == {"n": 7, "s": "kept"}
    assert store.claim("crash", 10, 30, "rescuer") == []  # still leased

    [claim] = wait_until_claimed(store, "crash", timeout=30)
    assert claim.recovered is True
    assert claim.job.attempts == 2
    assert claim.job.arguments == {"n": 7, "s": "kept"}
    store.complete(claim, None)  # the one-rename path keeps the right count
    record = store.get(env.id)
    assert record is not None
    assert record.state is JobState.SUCCEEDED
    assert record.envelope.attempts == 2


def test_outcome_left_half_recorded_by_a_killed_worker_runs_again(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    env = make_envelope("crash")
    store.add([env])
    victim = start_victim(tmp_path, 60.0, "finishing")
    record = store.get(env.id)
    assert record is not None
    assert record.state is JobState.RUNNING  # finishing/ shows as running
    assert store.claim("crash", 10, 30, "rescuer") == []  # its writer is alive: hands off
    kill(victim)

    [claim] = wait_until_claimed(store, "crash", timeout=30)
    assert claim.recovered is True
    assert claim.job.id == env.id
    store.complete(claim, {"ok": True})
    assert store.counts("crash")["crash"] == {JobState.SUCCEEDED: 1}


def test_a_slow_live_writer_keeps_its_outcome(store: FilesystemStorage) -> None:
    """An outcome stalled in finishing/ is never restored while its process lives."""
    store.add([make_envelope("slow")])
    [claim] = store.claim("slow", 1, 0.01, "slowpoke")
    store.folders.fence(claim)
    time.sleep(0.05)
    assert store.claim("slow", 10, 30, "other") == []
    assert store.counts("slow")["slow"] == {JobState.RUNNING: 1}


def test_outcome_half_recorded_before_a_reboot_runs_again(store: FilesystemStorage) -> None:
    """After a reboot a recorded pid may belong to someone else: the boot id decides."""
    env, claim = add_and_claim(store, "boot", 0.01, "before-reboot")
    queue = store.root / "queues" / "boot"
    # our own (live) pid, but an earlier boot
    name = f"{layout.HOST}@earlierboot@{os.getpid()}@{claim.receipt}"
    os.rename(queue / "running" / claim.receipt, queue / "finishing" / name)
    [again] = store.claim("boot", 1, 30, "after-reboot")
    assert again.job.id == env.id
    assert again.recovered is True


def test_orphan_whose_outcome_was_written_is_only_cleaned_up(store: FilesystemStorage) -> None:
    env, claim = add_and_claim(store, "orph", 30, "w")
    store.complete(claim, "done")
    # a copy as a crash after the final write and before the cleanup would leave it,
    # written by a pid that no longer exists
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    name = f"{layout.HOST}@{layout.BOOT}@{int(dead.stdout)}@{claim.receipt}"
    finishing = store.root / "queues" / "orph" / "finishing"
    (finishing / name).write_bytes(
        (store.root / "queues/orph/succeeded" / f"{env.id}.job").read_bytes()
    )
    assert store.claim("orph", 10, 30, "w") == []
    assert list(finishing.iterdir()) == []
    record = store.get(env.id)
    assert record is not None
    assert record.state is JobState.SUCCEEDED
    assert record.result == "done"


def test_corrupt_files_fail_with_the_decode_error_and_workers_go_on(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    good = make_envelope("bad")
    store.add([good])
    ready = store.root / "queues" / "bad" / "ready"
    running = store.root / "queues" / "bad" / "running"
    garbage = make_envelope("bad")
    wrong = make_envelope("bad")
    stale = make_envelope("bad")
    (ready / layout.ready_name(5, garbage.run_at, garbage.id, JobState.READY)).write_bytes(
        b"\x00\xff not json"
    )
    (ready / layout.ready_name(5, wrong.run_at, wrong.id, JobState.READY)).write_text(
        json.dumps({"envelope": {"id": "nope"}, "updated_at": 3})
    )
    folder = make_envelope("bad")
    (ready / layout.ready_name(5, folder.run_at, folder.id, JobState.READY)).mkdir()
    expired = running / layout.running_name(stale.id, "t0k3n", 1, "gone")
    expired.write_text("[1, 2")
    os.utime(expired, (0, 0))

    claims = store.claim("bad", 10, 30, "w")
    assert [c.job.id for c in claims] == [good.id]
    assert store.counts("bad")["bad"] == {JobState.FAILED: 4, JobState.RUNNING: 1}

    record = store.get(wrong.id)
    assert record is not None
    assert record.state is JobState.FAILED
    [error] = record.envelope.errors
    assert error.message.startswith("corrupt job file")
    assert "Invalid UUID - at `$.envelope.id`" in error.message
    assert error.type.startswith("msgspec.")
    kept = store.root / "queues" / "bad" / "failed" / f"{wrong.id}.job.corrupt"
    assert json.loads(kept.read_text())["envelope"] == {"id": "nope"}  # original bytes kept
    failed = store.search(msgspec.convert({"states": ["failed"]}, type=JobQuery))
    assert {r.id for r in failed.jobs} == {garbage.id, wrong.id, stale.id, folder.id}

    assert store.purge([JobState.FAILED]) == 4
    assert list((store.root / "queues" / "bad" / "failed").iterdir()) == []


def test_eight_threads_record_outcomes_with_fsync(tmp_path: Path) -> None:
    """Group-committed folder flushes: every thread's outcome is recorded, none twice."""
    store = open_store(tmp_path, fsync=True)
    store.add([make_envelope("many") for _ in range(400)])
    done: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        while claims := store.claim("many", 5, 30, threading.current_thread().name):
            for claim in claims:
                store.complete(claim, None if len(done) % 2 else {"n": 1})
                with lock:
                    done.append(str(claim.job.id))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(done) == len(set(done)) == 400
    assert store.counts("many")["many"] == {JobState.SUCCEEDED: 400}
