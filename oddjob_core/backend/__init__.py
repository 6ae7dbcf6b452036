"""The backend kit: what storage backends share, so each writes only what is its own.

- ``DelegatedManagement``: ``JobManagement`` kept in a module of its own.
- ``complete_in_chunks``: the body of a chunked, fenced ``complete_many``.
- ``RetentionSweeper``: purge expired history now and then, off the claiming thread.
- ``TransientRetry``: the transient-error retry loop of a database backend.
- ``JobQuery.matches`` / ``Page.of`` (``oddjob_core.model``): search filtering and
  paging for stores that filter in Python; ``QueueManagement.purge`` checks
  purge states before the backend's ``purge_finished`` runs.
"""

from __future__ import annotations

from ..retention import RetentionSweeper
from ..storage import DelegatedManagement, complete_in_chunks
from .transient import TransientRetry

__all__ = ["DelegatedManagement", "RetentionSweeper", "TransientRetry", "complete_in_chunks"]
