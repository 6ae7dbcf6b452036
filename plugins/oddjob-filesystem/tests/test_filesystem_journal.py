"""The enqueue journal: a SIGKILL right after ``add`` returns loses nothing; torn records are dropped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from oddjob_filesystem import FilesystemOptions, FilesystemStorage, journal, layout

from oddjob_core.model import JobState
from oddjob_core.testing import make_envelope


def open_store(path: Path) -> FilesystemStorage:
    return FilesystemStorage(FilesystemOptions(path=str(path)))


def stored_ids(store: FilesystemStorage, queue: str) -> list[str]:
    """The id of every job file of ``queue`` (a job stored twice shows up twice)."""
    paths = store.folders.queue(queue)
    names = [p.name for p in paths.base.rglob("*.job")]
    return [layout.job_id_of(name) for name in names]


# Enqueues one job per add, forever, printing each id once add has returned.
PRODUCER = """
import sys
from oddjob_filesystem import FilesystemOptions, FilesystemStorage
from oddjob_core.testing import make_envelope
store = FilesystemStorage(FilesystemOptions(path=sys.argv[1]))
while True:
    env = make_envelope("journal")
    store.add([env])
    print(env.id, flush=True)
"""


def produce_then_kill(path: Path, kill_after: int) -> list[str]:
    """Start a producer, SIGKILL it once it reported ``kill_after`` ids (plus a random bit)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    reported: list[str] = []
    while len(reported) < kill_after:
        line = proc.stdout.readline()
        assert line, "the producer died by itself"
        reported.append(line.strip())
    time.sleep(int.from_bytes(os.urandom(1), "little") / 255 * 0.05)  # anywhere in an add
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return reported + rest.split()


def test_sigkill_right_after_add_returns_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path,
) -> None:
    """Killed five times mid-stream (jobs still only in the journal): every reported job is stored once."""
    reported: list[str] = []
    for _ in range(5):
        reported += produce_then_kill(tmp_path, 40)
        assert any((tmp_path / "journal").glob("*.log")), "the producer left no journal"
    store = open_store(tmp_path)
    try:
        for job_id in reported:  # get adopts the dead producers' journals first
            record = store.get(uuid.UUID(job_id))
            assert record is not None, f"job {job_id} was acknowledged, then lost"
            assert record.state is JobState.READY
        ids = stored_ids(store, "journal")
        assert len(ids) == len(set(ids)), "a job was stored twice"
        assert set(reported) <= set(ids)
        assert not list((tmp_path / "journal").glob("*.log")), "an adopted journal was kept"
    finally:
        store.close()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def journal_of(
    tmp_path: Path, jobs: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[bytes, list[uuid.UUID]]:
    """The bytes of a journal holding ``jobs`` jobs, none of them spooled yet."""
    monkeypatch.setattr(journal, "SPOOL_IDLE", 3600.0)  # the spooler waits: jobs stay journaled
    monkeypatch.setattr(journal, "SPOOL_DELAY", 3600.0)
    store = open_store(tmp_path / "source")
    envs = [make_envelope("journal", arguments={"n": n}) for n in range(jobs)]
    for env in envs:
        store.add([env])
    path = store.journal.path
    assert path is not None
    return path.read_bytes(), [env.id for env in envs]


def plant(store_path: Path, data: bytes) -> Path:
    """``data`` as the journal of a process that died."""
    folder = store_path / "journal"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{layout.HOST}@{layout.BOOT}@{dead_pid()}@planted{journal.SUFFIX}"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("cut", ["half a record", "a frame header only", "garbage tail"])
def test_a_torn_last_record_is_dropped_and_the_whole_ones_stored(
    tmp_path: Path, cut: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, ids = journal_of(tmp_path, 5, monkeypatch)
    end = data.rstrip(b"\0") if data.endswith(b"\0") else data
    last = end.rfind(b'{"envelope"') - journal.FRAME.size  # start of the 5th record
    if cut == "half a record":
        torn = data[: last + (len(end) - last) // 2]
    elif cut == "a frame header only":
        torn = data[: last + journal.FRAME.size]
    else:
        torn = end[:last] + os.urandom(64)
    plant(tmp_path / "store", torn)
    store = open_store(tmp_path / "store")
    try:
        assert all(store.get(job_id) is not None for job_id in ids[:4])
        assert store.get(ids[4]) is None  # its add never returned: dropped, no error
        assert not list((tmp_path / "store" / "journal").glob("*.log"))
    finally:
        store.close()


def test_adoption_starts_at_the_header_offset_and_restores_a_job_lost_between_marker_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records before the header's offset are files already; a marker without a job is re-stored."""
    data, ids = journal_of(tmp_path, 3, monkeypatch)
    store = open_store(tmp_path / "store")
    try:
        # the spooler stored the 1st job and wrote the offset; it died after the 2nd's marker
        second = data.find(b'{"envelope"', data.find(b'{"envelope"') + 1) - journal.FRAME.size
        header = data[: journal.DONE_AT] + journal.DONE.pack(second)
        marker = tmp_path / "store" / "ids" / str(ids[1])[-2:] / str(ids[1])
        marker.parent.mkdir(parents=True)
        marker.touch()  # a marker without a job, and no adds-in-flight list saying why
        plant(tmp_path / "store", header + data[len(header) :])
        assert store.get(ids[0]) is None  # before the offset: taken as stored, not re-read
        assert store.get(ids[1]) is not None
        assert store.get(ids[2]) is not None
    finally:
        store.close()


def test_a_journal_of_a_live_process_is_left_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, ids = journal_of(tmp_path, 2, monkeypatch)
    folder = tmp_path / "store" / "journal"
    folder.mkdir(parents=True)
    live = folder / f"{layout.HOST}@{layout.BOOT}@{os.getppid()}@live{journal.SUFFIX}"
    live.write_bytes(data)
    store = open_store(tmp_path / "store")
    try:
        assert store.get(ids[0]) is None
        assert live.exists()
    finally:
        store.close()


def test_reads_in_the_producing_process_see_its_journaled_jobs_at_once(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    other = open_store(tmp_path)  # another instance on the same folder, same process
    try:
        env = make_envelope("journal")
        store.add([env])
        assert other.counts("journal")["journal"][JobState.READY] == 1
        [claim] = other.claim("journal", 1, 30.0, "w")
        assert claim.job.id == env.id
    finally:
        store.close()
        other.close()


def test_close_stores_every_journaled_job_and_deletes_the_journal(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    envs = [make_envelope("journal") for _ in range(20)]
    for env in envs:
        store.add([env])
    store.close()
    assert not list((tmp_path / "journal").glob("*.log"))
    assert sorted(stored_ids(open_store(tmp_path), "journal")) == sorted(str(e.id) for e in envs)


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str, calls: list[str]) -> None:
    real = getattr(journal.os, name)

    def counted(*args: object) -> object:
        calls.append(name)
        return real(*args)

    monkeypatch.setattr(journal.os, name, counted)


@pytest.mark.skipif(journal._DSYNC is None, reason="no RWF_DSYNC on this platform")
def test_a_durable_append_is_one_dsync_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path)
    store.add([make_envelope("dsync")])  # opens the journal (its own writes and flushes)
    calls: list[str] = []
    for name in ("pwritev", "pwrite", "fdatasync"):
        _count_calls(monkeypatch, name, calls)
    env = make_envelope("dsync")
    store.add([env])
    assert calls == ["pwritev"]  # write and flush in one call, not pwrite + fdatasync
    store.close()
    assert stored_ids(open_store(tmp_path), "dsync").count(str(env.id)) == 1


def test_without_rwf_dsync_an_append_writes_then_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel or file system that refuses RWF_DSYNC: pwrite + fdatasync, and it stays so."""
    import errno

    monkeypatch.setattr(journal, "_DSYNC", getattr(os, "RWF_DSYNC", 2))
    store = open_store(tmp_path)
    store.add([make_envelope("dsync")])
    calls: list[str] = []

    def refused(*args: object) -> int:
        calls.append("pwritev")
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(journal.os, "pwritev", refused)
    for name in ("pwrite", "fdatasync"):
        _count_calls(monkeypatch, name, calls)
    first, second = make_envelope("dsync"), make_envelope("dsync")
    store.add([first])
    store.add([second])
    assert calls == ["pwritev", "pwrite", "fdatasync", "pwrite", "fdatasync"]
    assert journal._DSYNC is None
    store.close()
    ids = stored_ids(open_store(tmp_path), "dsync")
    assert ids.count(str(first.id)) == 1
    assert ids.count(str(second.id)) == 1
