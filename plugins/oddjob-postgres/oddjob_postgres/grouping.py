"""Group commit for ``complete``: concurrent calls from worker threads share one UPDATE.

Every ``complete`` still returns only after its own row is committed (or
raises ``LeaseLost`` for its own row), so the contract is unchanged. While one
batch is being written, calls from other threads queue up and go together in
the next statement: one round trip and one commit for many jobs, which is what
lets eight threads drain far faster than one UPDATE per job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")


@dataclass
class _Slot(Generic[Item]):
    item: Item
    done: bool = False
    taken: bool = False
    ok: bool = False
    error: BaseException | None = None


@dataclass
class GroupCommitter(Generic[Item]):
    """Runs ``flush(items) -> accepted item indexes`` for batches of concurrently submitted items.

    At most ``max_flushes`` flushes run at a time; a thread that finds a free
    flush slot becomes a leader and writes everything queued so far (up to
    ``max_batch``). With few concurrent callers every call flushes at once (no
    added latency); under load, calls pile up behind the running flushes and
    share the next ones.
    """

    flush: Callable[[list[Item]], set[int]]
    max_batch: int = 500
    max_flushes: int = 2
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _queue: list[_Slot[Item]] = field(default_factory=list)
    _flushing: int = 0

    def submit(self, item: Item) -> bool:
        """Write ``item`` with whatever else is waiting; True if the write matched its row."""
        slot = _Slot(item)
        with self._cond:
            self._queue.append(slot)
            while not slot.done:
                if slot.taken or self._flushing >= self.max_flushes:
                    self._cond.wait()
                    continue
                self._flushing += 1
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                for s in batch:
                    s.taken = True
                self._cond.release()
                try:
                    accepted = self.flush([s.item for s in batch])
                    for i, s in enumerate(batch):
                        s.ok = i in accepted
                except BaseException as exc:
                    for s in batch:
                        s.error = exc
                finally:
                    self._cond.acquire()
                    for s in batch:
                        s.done = True
                    self._flushing -= 1
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.ok
