"""Where each job file lives and what its name encodes, so claims sort names and open no file.

    <root>/queues/<queue>/scheduled/<hour>/<run_at_us>_<prio>_<id>_<S|R|T>.job   due later
    <root>/queues/<queue>/ready/<prio>_<run_at_us>_<id>_<S|R|T>.job       waiting, due (claim order)
    <root>/queues/<queue>/running/<id>~<token>~<attempts>~<owner>.job     leased; mtime = lease expiry
    <root>/queues/<queue>/finishing/<host>@<pid>@<running name>           outcome being recorded
    <root>/queues/<queue>/{succeeded,failed,cancelled}/<id>.job            finished
    <root>/tmp/                                                            writes in progress

``prio`` is ``2**31 - priority`` zero-padded, so ascending names mean higher
priority first, then earlier run_at, then older id (UUIDv7: FIFO). The letter
is the waiting state shown to users (scheduled, ready, retrying), so counts
never open a file. ``<hour>`` is the start of the job's run_at hour in
microseconds: finding due jobs lists the folders of hours that have begun and
never touches jobs due later, however many there are.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from oddjob_core.model import JobState

SUFFIX = ".job"
PRIO_OFFSET = 2**31
WAITING_DIRS = ("scheduled", "ready")
LETTERS = {JobState.SCHEDULED: "S", JobState.READY: "R", JobState.RETRYING: "T"}
STATE_OF_LETTER = {letter: state for state, letter in LETTERS.items()}
FINISHED_DIRS = {
    "succeeded": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
}
ALL_DIRS = ("scheduled", "ready", "running", "finishing", *FINISHED_DIRS)
BUCKET_US = 3_600_000_000  # one scheduled/ sub-folder per hour of run_at


def bucket_of(run_at_us: int) -> str:
    """The scheduled/ sub-folder of a run_at: its hour's start, sortable."""
    return f"{run_at_us - run_at_us % BUCKET_US:017d}"


def is_waiting(folder: str) -> bool:
    """``ready`` or a ``scheduled/<hour>`` folder."""
    return folder == "ready" or folder.startswith("scheduled/")


def micros(moment: datetime) -> int:
    """Microseconds since the epoch (UTC), the sortable form of a time in file names."""
    return int(moment.timestamp() * 1_000_000)


def from_micros(value: int) -> datetime:
    """Inverse of ``micros``."""
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def check_priority(priority: int) -> int:
    """Priorities must fit the 10-digit name field."""
    if not -PRIO_OFFSET < priority < PRIO_OFFSET:
        raise ValueError(f"priority {priority} is out of range (±{PRIO_OFFSET - 1})")
    return PRIO_OFFSET - priority


def ready_name(priority: int, run_at: datetime, job_id: uuid.UUID, state: JobState) -> str:
    return (
        f"{check_priority(priority):010d}_{micros(run_at):017d}_{job_id}_{LETTERS[state]}{SUFFIX}"
    )


def scheduled_name(priority: int, run_at: datetime, job_id: uuid.UUID, state: JobState) -> str:
    return (
        f"{micros(run_at):017d}_{check_priority(priority):010d}_{job_id}_{LETTERS[state]}{SUFFIX}"
    )


def _safe(text: str) -> str:
    """Keep a free-form string (owner, host) from breaking the name's separators."""
    return "".join("-" if c in "~@/\\\0" else c for c in text)[:64]


def running_name(job_id: uuid.UUID | str, token: str, attempts: int, owner: str) -> str:
    return f"{job_id}~{token}~{attempts}~{_safe(owner)}{SUFFIX}"


def _boot_id() -> str:
    """Changes at every boot (Linux); pids of an earlier boot say nothing about today's."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            return file.read().strip().replace("-", "")[:12] or "0"
    except OSError:
        return "0"


HOST = _safe(socket.gethostname())
BOOT = _boot_id()


def finishing_name(running: str) -> str:
    """The name a running file takes while this process records its outcome.

    Host, boot and pid say who is writing, so a claim can tell a crashed writer
    (pid gone on this host, or the host rebooted) from a slow one, and never
    restores the job of a writer that is still alive.
    """
    return f"{HOST}@{BOOT}@{os.getpid()}@{running}"


@dataclass(frozen=True)
class FinishingName:
    """A parsed finishing/ name."""

    host: str
    boot: str
    pid: int
    running: str


def parse_finishing(name: str) -> FinishingName | None:
    parts = name.split("@")
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return FinishingName(parts[0], parts[1], int(parts[2]), parts[3])


def finished_name(job_id: uuid.UUID) -> str:
    return f"{job_id}{SUFFIX}"


@dataclass(frozen=True)
class WaitingName:
    """A parsed ready/scheduled file name."""

    name: str
    prio: str
    run_at_us: int
    job_id: str
    state: JobState

    def promoted(self) -> str:
        """The ready-folder name of this (scheduled-folder) job."""
        return f"{self.prio}_{self.run_at_us:017d}_{self.job_id}_{LETTERS[self.state]}{SUFFIX}"


def parse_waiting(name: str, folder: str) -> WaitingName | None:
    """Parse a ready or scheduled name; None for anything else (a stray or corrupt name)."""
    if not name.endswith(SUFFIX):
        return None
    parts = name[: -len(SUFFIX)].split("_")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    state = STATE_OF_LETTER.get(parts[3])
    if state is None:
        return None
    prio, run_at = (parts[0], parts[1]) if folder == "ready" else (parts[1], parts[0])
    return WaitingName(name, prio, int(run_at), parts[2], state)


@dataclass(frozen=True)
class RunningName:
    """A parsed running file name."""

    name: str
    job_id: str
    token: str
    attempts: int
    owner: str


def parse_running(name: str) -> RunningName | None:
    if not name.endswith(SUFFIX):
        return None
    parts = name[: -len(SUFFIX)].split("~")
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return RunningName(name, parts[0], parts[1], int(parts[2]), parts[3])


def job_id_of(name: str) -> str:
    """The job id inside any of the names above."""
    stem = name.rsplit("@", 1)[-1].split(".", 1)[0]
    if "~" in stem:
        return stem.split("~")[0]
    parts = stem.split("_")
    return parts[2] if len(parts) == 4 else parts[0]


class QueuePaths:
    """The folders of one queue."""

    def __init__(self, root: Path, queue: str) -> None:
        self.base = root / "queues" / queue
        self.scheduled = self.base / "scheduled"
        self.ready = self.base / "ready"
        self.running = self.base / "running"
        self.finishing = self.base / "finishing"
        self.succeeded = self.base / "succeeded"
        self.failed = self.base / "failed"
        self.cancelled = self.base / "cancelled"
        # plain strings for the hot paths (claim, complete, extend): pathlib costs ~25% there
        self.ready_s = f"{self.ready}{os.sep}"
        self.running_s = f"{self.running}{os.sep}"
        self.succeeded_s = f"{self.succeeded}{os.sep}"
        self.finishing_s = f"{self.finishing}{os.sep}"

    def folder(self, name: str) -> Path:
        return self.base / name

    def create(self) -> None:
        for name in ALL_DIRS:
            (self.base / name).mkdir(parents=True, exist_ok=True)
