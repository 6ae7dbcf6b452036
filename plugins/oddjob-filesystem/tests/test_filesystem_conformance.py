"""The filesystem store passes the storage conformance suite."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from oddjob_filesystem import FilesystemOptions, FilesystemStorage

from oddjob_core.storage import Storage
from oddjob_core.testing import StorageSuite, make_envelope
from oddjob_core.testing.recurring_suite import RecurringSuite
from oddjob_core.testing.storage_suite import StorageFactory


class TestFilesystemStorage(StorageSuite, RecurringSuite):
    @pytest.fixture
    def storage_factory(self, tmp_path: Path) -> StorageFactory:
        options = FilesystemOptions(path=str(tmp_path / "store"), refresh_interval=0.05)
        return lambda: FilesystemStorage(options)

    def inject_corrupt_job(self, storage: Storage, queue: str) -> None:
        assert isinstance(storage, FilesystemStorage)
        ready = storage.root / "queues" / queue / "ready"
        ready.mkdir(parents=True, exist_ok=True)
        (ready / "0000000001_00000000000000001_garbage_R.job").write_bytes(b"\x00\xffnot json")

    def inject_misrouted_job(self, storage: Storage, queue: str, kind: str) -> uuid.UUID:
        """A job file moved by hand into another queue's folder, or renamed to another id."""
        assert isinstance(storage, FilesystemStorage)
        source = f"{queue}-elsewhere" if kind == "queue" else queue
        env = make_envelope(source)
        storage.add([env])
        storage.spool()  # the file, not only the journal's record
        ready = storage.root / "queues" / queue / "ready"
        ready.mkdir(parents=True, exist_ok=True)
        (path,) = (storage.root / "queues" / source / "ready").glob(f"*{env.id}*")
        stored_as = env.id if kind == "queue" else uuid.uuid4()
        path.rename(ready / path.name.replace(str(env.id), str(stored_as)))
        return stored_as


def test_idle_wait_returns_soon_after_a_job_is_added(tmp_path: Path) -> None:
    import threading
    import time

    from oddjob_core.testing import make_envelope

    store = FilesystemStorage(FilesystemOptions(path=str(tmp_path), fsync=False))
    timer = threading.Timer(0.2, lambda: store.add([make_envelope("wake")]))
    timer.start()
    started = time.monotonic()
    store.wait_for_work(["wake"], timeout=10)
    waited = time.monotonic() - started
    timer.join()
    assert 0.15 < waited < 5, f"woke after {waited:.2f} s"
    assert len(store.claim("wake", 10, 30, "w")) == 1


def test_fast_complete_still_reports_attempts_and_finish_time(tmp_path: Path) -> None:
    from oddjob_core.model import JobState
    from oddjob_core.testing import make_envelope

    store = FilesystemStorage(FilesystemOptions(path=str(tmp_path)))
    env = make_envelope("fast")
    store.add([env])
    [claim] = store.claim("fast", 1, 30, "w")
    store.complete(claim, None)  # no result: the one-rename path
    record = store.get(env.id)
    assert record is not None
    assert record.state is JobState.SUCCEEDED
    assert record.envelope.attempts == 1
    assert record.finished_at is not None
    assert store.requeue(env.id) is True
    [again] = store.claim("fast", 1, 30, "w")
    assert again.job.attempts == 1


def test_a_stale_listing_does_not_hide_new_jobs(tmp_path: Path) -> None:
    """Names cached by one process and taken by another: the claim lists again at once."""
    from oddjob_core.testing import make_envelope

    options = FilesystemOptions(path=str(tmp_path), fsync=False, refresh_interval=60)
    mine, theirs = FilesystemStorage(options), FilesystemStorage(options)
    theirs.add([make_envelope("stale") for _ in range(5)])
    assert len(mine.claim("stale", 1, 30, "me")) == 1  # lists 5, keeps 4 names cached
    assert len(theirs.claim("stale", 10, 30, "them")) == 4
    fresh = [make_envelope("stale") for _ in range(3)]
    theirs.add(fresh)
    got = mine.claim("stale", 3, 30, "me")
    assert [c.job.id for c in got] == [e.id for e in fresh]


def test_dot_queue_names_cannot_escape_the_store(tmp_path: Path) -> None:
    from oddjob_core.errors import StorageError
    from oddjob_core.testing import make_envelope

    store = FilesystemStorage(FilesystemOptions(path=str(tmp_path / "store"), fsync=False))
    for name in (".", ".."):
        with pytest.raises(StorageError, match="only dots"):
            store.add([make_envelope(name)])
        with pytest.raises(ValueError, match="only dots"):
            store.claim(name, 1, 30, "w")
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["queues", "tmp"]
