"""The id index keeps the first job of an id, and a producer's crash mid-add loses no retried add."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
from oddjob_filesystem import FilesystemOptions, FilesystemStorage, layout

from oddjob_core.model import Envelope
from oddjob_core.testing import make_envelope

KILLED_BETWEEN_MARKER_AND_RENAME = """
import os, signal, sys
import msgspec
from oddjob_filesystem import FilesystemOptions, FilesystemStorage, journal
from oddjob_filesystem.folders import JobFolders
from oddjob_core.model import Envelope

def die(self, source, destination):
    os.kill(os.getpid(), signal.SIGKILL)

JobFolders.rename_into = die
journal.MAX_JOBS = 0  # the direct path (a batch's): a journaled job is stored by adoption
store = FilesystemStorage(FilesystemOptions(path=sys.argv[1], fsync=False))
store.add([msgspec.json.decode(sys.stdin.read().encode(), type=Envelope) for _ in [0]])
"""


def open_store(path: Path) -> FilesystemStorage:
    return FilesystemStorage(FilesystemOptions(path=str(path), fsync=False))


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    return int(done.stdout)


def in_flight(store: FilesystemStorage, pid: int, *jobs: Envelope) -> None:
    """An ``adding`` file as a producer with ``pid`` leaves it when it dies mid-add."""
    folder = store.root / "ids" / "adding"
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{env.queue} {env.id}\n" for env in jobs)
    (folder / f"{layout.HOST}@{layout.BOOT}@{pid}@live").write_text(lines)


def test_an_add_retried_after_its_producer_was_killed_mid_add_stores_the_job(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path)
    env = make_envelope("crash", arguments={"n": 1})
    victim = subprocess.run(
        [sys.executable, "-c", KILLED_BETWEEN_MARKER_AND_RENAME, str(tmp_path)],
        input=msgspec.json.encode(env).decode(),
        text=True,
        capture_output=True,
    )
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    assert (tmp_path / "ids" / str(env.id)[-2:] / str(env.id)).exists(), "no marker was left"
    assert store.get(env.id) is None

    store.add([env])  # the producer, restarted, adds the job again

    record = store.get(env.id)
    assert record is not None, "the retried add was skipped: the dead producer's marker won"
    assert record.envelope.arguments == env.arguments
    own = f"{layout.HOST}@{layout.BOOT}@{os.getpid()}@live"
    left = [p.name for p in (tmp_path / "ids" / "adding").iterdir()]
    assert left == [own], "the dead producer's list was not cleaned up"


def test_a_job_a_dead_producer_did_store_is_kept_on_re_add(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    env = make_envelope("kept", arguments={"n": 1})
    store.add([env])
    in_flight(store, dead_pid(), env)  # it died after the rename, before emptying its list

    store.add([msgspec.structs.replace(env, arguments={"n": 2})])

    record = store.get(env.id)
    assert record is not None
    assert record.envelope.arguments == {"n": 1}
    assert store.counts("kept")["kept"] == {record.state: 1}


def test_a_live_producer_mid_add_keeps_its_ids(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    env = make_envelope("live")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as producer:
        try:
            store.ids.reserve([env])  # its marker, made as the live producer would
            store.ids.done()
            in_flight(store, producer.pid, env)
            store.add([env])  # another worker adding the same tick meanwhile
            assert store.get(env.id) is None, "a live producer's add was taken over"
        finally:
            producer.kill()
