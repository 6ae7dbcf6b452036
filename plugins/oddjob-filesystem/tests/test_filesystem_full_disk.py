"""A full disk (issue #12 item 6): storage errors, no job run without its record, no tmp leak,
and a burst worker that gives up instead of retrying forever."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from oddjob_filesystem import FilesystemOptions, FilesystemStorage
from oddjob_filesystem import files as fs_files

from oddjob_core import Oddjob
from oddjob_core.errors import StorageError
from oddjob_core.testing import make_envelope, targets


def _full(*args: object, **kwargs: object) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_add_on_a_full_disk_is_a_storage_error_and_leaves_no_tmp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemStorage(FilesystemOptions(path=str(tmp_path), fsync=False))
    monkeypatch.setattr(fs_files.os, "write", _full)  # the file primitive: the disk is full
    monkeypatch.setattr(fs_files.os, "pwrite", _full)  # ... and the journal's
    with pytest.raises(StorageError, match="is full"):  # was a raw OSError
        store.add([make_envelope("full"), make_envelope("full")])
    with pytest.raises(StorageError, match="is full"):
        store.add([make_envelope("full")])
    assert list((tmp_path / "tmp").iterdir()) == []  # tmp/*.new files leaked
    assert list((tmp_path / "journal").iterdir()) == []  # nor a half-made journal


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A private 2 MB tmpfs (needs root); skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a private tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_no_job_is_claimed_while_the_disk_is_full(tiny_disk: Path) -> None:
    store = FilesystemStorage(FilesystemOptions(path=str(tiny_disk / "store"), fsync=False))
    jobs = [make_envelope("full") for _ in range(5)]
    store.add(jobs)
    filler = _fill(tiny_disk)
    with pytest.raises(StorageError, match="not claiming"):  # claimed, ran, never recorded
        store.claim("full", 10, 30, "w")
    with pytest.raises(StorageError, match="is full"):
        store.add([make_envelope("full")])
    assert list((tiny_disk / "store" / "tmp").iterdir()) == []
    filler.unlink()
    claims = store.claim("full", 10, 30, "w")
    assert {c.job.id for c in claims} == {j.id for j in jobs}
    assert store.complete_many([(c, None) for c in claims]) == {}


def test_a_burst_worker_on_a_full_disk_gives_up(tiny_disk: Path) -> None:
    targets.reset()
    path = str(tiny_disk / "store")
    with Oddjob(
        storage="filesystem",
        filesystem={"path": path, "fsync": False},
        allowed_prefixes=[targets.__name__],
    ) as app:
        app.enqueue(targets.echo, "full", 1)
        _fill(tiny_disk)
        with pytest.raises(StorageError, match="gave up"):  # retried forever
            app.run_worker(burst=True, handle_signals=False, workers=1)
    assert targets.SEEN["full"] == []  # never run without a record


def test_the_room_check_trusts_a_roomy_disk_briefly_and_a_tight_one_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One statvfs per enqueue was a quarter of its CPU: skipped while the disk is roomy."""
    from oddjob_filesystem import space

    free = [space.AddRoom.PLENTY - 1]
    looks: list[int] = []

    def fake_free(root: Path) -> int:
        looks.append(1)
        return free[0]

    monkeypatch.setattr(space, "free_bytes", fake_free)
    room = space.AddRoom(tmp_path)
    for _ in range(5):
        room.check(1)
    assert len(looks) == 5  # tight: every add looks again
    free[0] = space.AddRoom.PLENTY
    for _ in range(100):
        room.check(1)
    assert len(looks) == 6  # roomy: trusted for TRUST seconds
    free[0] = space.MIN_FREE - 1
    with pytest.raises(StorageError, match="is full"):
        space.AddRoom(tmp_path).check(3)
