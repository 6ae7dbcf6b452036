"""The scheduler every worker process runs: it enqueues due ticks a little ahead.

There is no leader (except on a store that cannot deduplicate ids, see
``lease.py``). Each process computes the same tick instants and the same
job id per tick (``tick_id``); the store keeps the first ``add`` of an id and
ignores the others, so a tick becomes exactly one job however many workers
enqueue it. Ticks go in ``lookahead`` seconds early with ``run_at`` = the tick
instant, so the ordinary "not before" claim runs them on time.

Shared state lives in the store's key/value table when it has one
(``oddjob_core.keyvalue``): ``schedule-paused/NAME`` (present: paused) and
``schedule-progress``, one document mapping each schedule to the last tick
instant enqueued or skipped (read at start to find ticks missed while no worker
ran). Every worker writes its own view of it after a batch; the views agree,
and one that lags only makes a later catch-up re-add ticks the store already
holds (a no-op).
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

import msgspec

from ..clock import utcnow
from ..errors import ConfigError, StorageError
from ..keyvalue import KeyValueStore, key_value_of
from ..model import Envelope
from ..storage import Storage
from .lease import scheduler_lease_of
from .schedule import CatchUp, Schedule
from .timing import Timing

log = logging.getLogger("oddjob.scheduler")

PAUSED = "schedule-paused/"
PROGRESS = "schedule-progress"
_progress = msgspec.json.Decoder(dict[str, datetime])
_encode = msgspec.json.Encoder().encode


def deduplicates_ids(storage: Storage) -> bool:
    """Whether ``add`` keeps the first job of an id (every backend but those that say not)."""
    return bool(getattr(storage, "deduplicates_ids", True))


def paused_names(kv: KeyValueStore | None) -> set[str]:
    """Names of the schedules paused in the store."""
    if kv is None:
        return set()
    return {key[len(PAUSED) :] for key in kv.kv_read(PAUSED)}


def read_through(kv: KeyValueStore | None) -> dict[str, datetime]:
    """The last tick instant each schedule enqueued (or skipped), as stored."""
    if kv is None:
        return {}
    raw = kv.kv_read(PROGRESS).get(PROGRESS)
    if raw is None:
        return {}
    try:
        return _progress.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("ignoring unreadable schedule progress: %s", exc)
        return {}


def write_through(kv: KeyValueStore, through: dict[str, datetime]) -> None:
    """Store every schedule's progress as one document (one small write per pass)."""
    kv.kv_write({PROGRESS: _encode(through)})


def plan_ticks(
    schedule: Schedule, through: datetime | None, now: datetime, until: datetime, grace: float
) -> tuple[list[datetime], datetime | None]:
    """The tick instants to enqueue for ``schedule`` up to ``until``, and the new ``through``.

    ``through`` is the last tick already handled (None: a schedule never seen,
    which starts at ``now - grace`` and catches nothing up). Ticks before
    ``now - grace`` were missed; the schedule's ``catch_up`` policy picks
    which of them still run. Returns ``([], through)`` when nothing is due.
    """
    late = now - timedelta(seconds=grace)
    start = through if through is not None else late - timedelta(microseconds=1)
    ticks: list[datetime] = []
    new_through = through
    if start < late - timedelta(microseconds=1):
        missed: list[datetime] = []
        keep = {CatchUp.NONE: 0, CatchUp.LATEST: 1, CatchUp.ALL: schedule.max_catch_up}
        wanted = keep[schedule.catch_up]
        for instant in schedule.timing.before(late):
            if instant <= start:
                break
            if new_through is None or instant > new_through:
                new_through = instant
            if len(missed) >= wanted:
                break
            missed.append(instant)
        ticks.extend(reversed(missed))
        start = max(start, late - timedelta(microseconds=1))
    for instant in schedule.timing.after(start):
        if instant > until:
            break
        ticks.append(instant)
        new_through = instant
    return ticks, new_through


class _Plans:
    """``plan_ticks`` and ``next_after`` for one pass, computed once per distinct timing.

    Schedules that share a timing (10,000 schedules of ``every = "1m"``, or many
    of one cron line) tick at the same instants: the pass works them out once.
    """

    def __init__(self, now: datetime, until: datetime, grace: float) -> None:
        self.now = now
        self.until = until
        self.grace = grace
        self._ticks: dict[tuple[object, ...], tuple[list[datetime], datetime | None]] = {}
        self._following: dict[tuple[Timing, datetime], datetime] = {}

    def ticks(
        self, schedule: Schedule, through: datetime | None
    ) -> tuple[list[datetime], datetime | None]:
        key = (schedule.timing, schedule.catch_up, schedule.max_catch_up, through)
        plan = self._ticks.get(key)
        if plan is None:
            plan = plan_ticks(schedule, through, self.now, self.until, self.grace)
            self._ticks[key] = plan
        return plan

    def following(self, timing: Timing, moment: datetime) -> datetime:
        key = (timing, moment)
        instant = self._following.get(key)
        if instant is None:
            instant = self._following[key] = timing.next_after(moment)
        return instant


class Scheduler:
    """Enqueues the ticks of ``schedules`` into ``storage``; ``run_pass`` is one step.

    ``clock`` is injectable so tests drive time. ``lookahead``: how early a tick
    is enqueued; ``grace``: how late a tick may still be enqueued as on time
    before it counts as missed.
    """

    def __init__(
        self,
        storage: Storage,
        schedules: Iterable[Schedule],
        *,
        clock: Callable[[], datetime] = utcnow,
        lookahead: float = 5.0,
        grace: float = 10.0,
        max_sleep: float = 1.0,
        batch_size: int = 10_000,
    ) -> None:
        self.storage = storage
        self.schedules = {s.name: s for s in schedules}
        self.lease = scheduler_lease_of(storage) if not deduplicates_ids(storage) else None
        if self.schedules and not deduplicates_ids(storage) and self.lease is None:
            raise ConfigError(
                f"storage '{storage.name}' cannot keep one job per tick (its add does not "
                "deduplicate job ids), so this worker cannot run schedules; start it with "
                "--no-schedules or use a store that can"
            )
        self.kv = key_value_of(storage)
        self.clock = clock
        self.lookahead = lookahead
        self.grace = grace
        self.max_sleep = max_sleep
        self.batch_size = batch_size
        self.through: dict[str, datetime | None] = {}
        self._due: list[tuple[datetime, str]] = []  # (next instant not yet handled, name)
        self._loaded = False
        self.round_trips = 0  # add() calls made, for the benchmark
        self.enqueued = 0  # ticks handed to add() (the store may have kept another worker's)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one pass ------------------------------------------------------------------

    def _load(self, now: datetime) -> None:
        stored = read_through(self.kv)
        for name in self.schedules:
            self.through[name] = stored.get(name)
            heapq.heappush(self._due, (now, name))  # every schedule is looked at once
        self._loaded = True

    def run_pass(self) -> float:
        """Enqueue every tick due within ``lookahead``; return seconds until the next pass.

        A pass with nothing due touches no store (but the lease, where there is
        one): the paused flags are read only when some schedule is due.
        """
        if self.lease is not None and not self.lease.hold_scheduler_lease():
            self._loaded = False  # when this process takes over, it reads the stored progress
            self._due.clear()
            return self.max_sleep
        now = self.clock()
        if not self._loaded:
            self._load(now)
        until = now + timedelta(seconds=self.lookahead)
        if not self._due or self._due[0][0] > until:
            return self._sleep_after(now)
        plans = _Plans(now, until, self.grace)
        jobs, moved, handled = self._plan(plans, paused_names(self.kv))
        try:
            self._add(jobs)
        except StorageError as exc:
            log.warning("could not enqueue %d tick(s), trying again: %s", len(jobs), exc)
            for name in handled:
                heapq.heappush(self._due, (now, name))
            return self.max_sleep
        for name in handled:
            through = moved.get(name, self.through[name])
            self.through[name] = through
            following = plans.following(self.schedules[name].timing, through or until)
            heapq.heappush(self._due, (following, name))
        self._save(moved)
        return self._sleep_after(now)

    def _plan(
        self, plans: _Plans, paused: set[str]
    ) -> tuple[list[Envelope], dict[str, datetime], list[str]]:
        """Pop the schedules due by ``plans.until``: their tick jobs, moved progress, names."""
        jobs: list[Envelope] = []
        moved: dict[str, datetime] = {}
        handled: list[str] = []
        while self._due and self._due[0][0] <= plans.until:
            _, name = heapq.heappop(self._due)
            handled.append(name)
            schedule = self.schedules[name]
            ticks, through = plans.ticks(schedule, self.through[name])
            if name not in paused:
                jobs.extend(schedule.tick(t, plans.now) for t in ticks)
            elif ticks:
                log.debug("schedule %s is paused: %d tick(s) skipped", name, len(ticks))
            if through is not None and through != self.through[name]:
                moved[name] = through
        return jobs, moved, handled

    def _add(self, jobs: Sequence[Envelope]) -> None:
        for start in range(0, len(jobs), self.batch_size):
            self.storage.add(jobs[start : start + self.batch_size])
            self.round_trips += 1
            self.enqueued += len(jobs[start : start + self.batch_size])

    def _save(self, moved: dict[str, datetime]) -> None:
        if self.kv is None or not moved:
            return
        try:
            write_through(self.kv, {n: t for n, t in self.through.items() if t is not None})
        except StorageError as exc:  # only catch-up after an outage depends on it
            log.warning("could not store schedule progress: %s", exc)

    def _sleep_after(self, now: datetime) -> float:
        if not self._due:
            return self.max_sleep
        wake = self._due[0][0] - timedelta(seconds=self.lookahead)
        return max(0.05, min(self.max_sleep, (wake - self.clock()).total_seconds()))

    # -- the thread ------------------------------------------------------------------

    def start(self) -> None:
        """Run passes in a daemon thread until ``stop``."""
        if not self.schedules or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="oddjob-scheduler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.run_pass()
            except Exception:  # a bug or a store down: log, keep the worker's jobs running
                log.exception("scheduler pass failed; trying again")
                wait = self.max_sleep
            self._stop.wait(wait)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (ticks already enqueued stay enqueued)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
