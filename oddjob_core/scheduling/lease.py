"""An optional storage interface for stores whose ``add`` cannot deduplicate job ids.

On such a store (RabbitMQ: a queue has no lookup by id) two workers enqueueing
the same tick would make two jobs, so only one process may schedule: the one
holding the scheduler lease. The scheduler asks ``hold_scheduler_lease`` before
every pass; a process that loses the lease stops enqueueing, and the one that
takes it over reads how far ticks were enqueued from the store's key/value
state and goes on from there.
"""

from __future__ import annotations

import abc

from ..storage import Storage


class SchedulerLease(abc.ABC):
    """One scheduling process at a time, taken over when the holder dies."""

    @abc.abstractmethod
    def hold_scheduler_lease(self) -> bool:
        """Take or keep the lease; True while this process holds it (one round trip)."""


def scheduler_lease_of(storage: Storage) -> SchedulerLease | None:
    """``storage`` as ``SchedulerLease``, or None."""
    return storage if isinstance(storage, SchedulerLease) else None
