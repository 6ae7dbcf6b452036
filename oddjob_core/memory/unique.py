"""The memory store's unique keys: a (queue, key) → id map checked against the job's state."""

from __future__ import annotations

import threading
import uuid
from typing import cast

from ..errors import KeyHeld
from ..model import Envelope, JobState
from ..storage import Storage
from ..unique import UniqueKeys


class MemoryUniqueKeys(UniqueKeys):
    """Mixed into ``MemoryStorage``; a key is free once its job's state is finished."""

    _key_holders: dict[tuple[str, str], uuid.UUID]
    _keys_lock: threading.Lock

    def _unique_init(self) -> None:
        self._key_holders = {}
        self._keys_lock = threading.Lock()

    def _state_of(self, job_id: uuid.UUID) -> JobState | None:
        raise NotImplementedError

    def add_unique(self, job: Envelope) -> uuid.UUID:
        if job.key is None:
            raise ValueError("add_unique needs a job with a key")
        slot = (job.queue, job.key)
        with self._keys_lock:  # every keyed add goes through here: check and add are atomic
            holder = self._key_holders.get(slot)
            if holder is not None:
                state = self._state_of(holder)
                if state is not None and (state.waiting or state is JobState.RUNNING):
                    return holder
            cast(Storage, self).add([job])
            self._key_holders[slot] = job.id
            return job.id

    def _take_key_back(self, job: Envelope) -> None:
        """Give a requeued ``job`` its key (``_keys_lock`` held); ``KeyHeld`` if another has it."""
        if job.key is None:
            return
        slot = (job.queue, job.key)
        holder = self._key_holders.get(slot)
        if holder is not None and holder != job.id:
            state = self._state_of(holder)
            if state is not None and (state.waiting or state is JobState.RUNNING):
                raise KeyHeld(job.id, job.key, job.queue, holder)
        self._key_holders[slot] = job.id
