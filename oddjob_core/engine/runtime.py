"""Everything an executor needs from the core, bundled: settings, storage, hooks, runner."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from ..config import Settings
from ..plugins import Hooks
from ..storage import Storage
from ..targets import TargetResolver
from .runner import JobRunner


def worker_id() -> str:
    """``host:pid:random``: names the lease owner in storage and logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Runtime:
    """The worker-side wiring of one ``Oddjob`` app."""

    settings: Settings
    storage: Storage
    hooks: Hooks
    targets: TargetResolver
    owner: str = field(default_factory=worker_id)
    runner: JobRunner = field(init=False)

    def __post_init__(self) -> None:
        self.runner = JobRunner(self.storage, self.hooks, self.targets)
