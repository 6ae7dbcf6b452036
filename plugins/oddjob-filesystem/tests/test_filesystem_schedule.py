"""Scheduled jobs wait in per-hour folders: a claim never lists an hour that has not begun."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from oddjob_filesystem import FilesystemOptions, FilesystemStorage, files, folders, layout

from oddjob_core.clock import utcnow
from oddjob_core.model import AttemptError, JobState
from oddjob_core.testing import make_envelope


def test_jobs_due_later_cost_a_claim_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemStorage(FilesystemOptions(path=str(tmp_path), fsync=False))
    now = utcnow()
    later = [make_envelope("sched", run_at=now + timedelta(days=3, minutes=i)) for i in range(300)]
    much_later = [make_envelope("sched", run_at=now + timedelta(days=40)) for _ in range(10)]
    due = make_envelope("sched")
    store.add([*later, *much_later, due])
    soon = make_envelope("sched", delay=0.5)  # added after the batch: a slow add keeps it later
    store.add([soon])
    store.spool()  # its hour folder too, not only the journal's record
    hours = sorted(p.name for p in (tmp_path / "queues/sched/scheduled").iterdir())
    assert len(hours) >= 6  # 300 minutes in 3 days' hours, one in 40 days, one now

    listed: list[str] = []
    real = files.job_files

    def spy(folder: Path) -> object:
        listed.append(str(folder))
        return real(folder)

    monkeypatch.setattr(files, "job_files", spy)
    [claim] = store.claim("sched", 10, 30, "w")
    assert claim.job.id == due.id
    begun = {h for h in hours if int(h) <= layout.micros(utcnow())}
    touched = {Path(f).name for f in listed if Path(f).parent.name == "scheduled"}
    assert touched <= begun, "a claim listed an hour folder that has not begun"
    assert not [f for f in listed if Path(f).name == "scheduled"], "listed every scheduled job"

    assert store.next_due("sched") == soon.run_at
    time.sleep(0.6)
    store.folders.changed("sched")  # skip the refresh interval
    [claim] = store.claim("sched", 10, 30, "w")
    assert claim.job.id == soon.id
    monkeypatch.undo()
    counts = store.counts("sched")["sched"]
    assert counts == {JobState.SCHEDULED: 310, JobState.RUNNING: 2}
    assert store.next_due("sched") is not None
    record = store.get(much_later[0].id)
    assert record is not None
    assert record.state is JobState.SCHEDULED
    assert store.cancel(much_later[0].id) is True


def test_an_hour_gone_by_is_promoted_and_its_folder_removed(tmp_path: Path) -> None:
    store = FilesystemStorage(FilesystemOptions(path=str(tmp_path), fsync=True))
    late = make_envelope("gone")
    # a job a slow producer put into an hour that has since passed
    past = layout.micros(utcnow()) - 2 * layout.BUCKET_US
    folder = tmp_path / "queues" / "gone" / "scheduled" / layout.bucket_of(past)
    store.folders.queue("gone")
    store.folders.put(
        folder / layout.scheduled_name(0, late.run_at, late.id, JobState.SCHEDULED),
        folders.encode(folders.StoredJob(envelope=late, updated_at=utcnow())),
    )
    assert folder.is_dir()  # created on the way
    [claim] = store.claim("gone", 10, 30, "w")
    assert claim.job.id == late.id
    assert not folder.exists()

    # a retry into the current hour re-creates that hour's folder as needed
    store.retry(claim, utcnow() + timedelta(seconds=0.3), _error())
    assert store.counts("gone")["gone"] == {JobState.RETRYING: 1}
    time.sleep(0.4)
    store.folders.changed("gone")
    [again] = store.claim("gone", 10, 30, "w")
    assert again.job.attempts == 2


def _error() -> AttemptError:
    return AttemptError(attempt=1, type="builtins.ValueError", message="x", at=utcnow())
