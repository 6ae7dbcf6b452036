"""What ``oddjob doctor`` needs from RabbitMQ: delete the queues and exchanges of its private prefix."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from oddjob_core.doctor import DoctorSupport


class RabbitDoctor(DoctorSupport):
    """Mixed into ``RabbitStorage``: every queue this instance declared goes, with its messages."""

    #: claims return what the consumer's prefetch window holds: the suite's batch tests
    #: (250 jobs, limits) need a window wider than the default, as in the plugin's own tests
    suite_options: ClassVar[dict[str, Any]] = {"prefetch": 1000}
    suite_skips: ClassVar[dict[str, str]] = {
        "test_purge_deletes_old_finished_jobs_only": (
            "RabbitMQ keeps no succeeded jobs; purge deletes failed jobs (tested by the plugin)"
        ),
        "test_re_adding_an_existing_id_keeps_the_stored_job": (
            "a known limitation: a re-added id is published as a second message (the broker "
            "cannot look a job up by id before publishing); see docs/rabbitmq.md"
        ),
    }

    _adopted_queues: frozenset[str] = frozenset()

    @property
    def known_queues(self) -> frozenset[str]:
        raise NotImplementedError  # provided by RabbitStorage

    @property
    def server_version(self) -> str:
        raise NotImplementedError  # provided by RabbitStorage

    def delete_topology(self, queues: Iterable[str]) -> None:
        raise NotImplementedError  # provided by RabbitStorage

    def server_settings(self) -> dict[str, str]:
        return {"server_version": self.server_version}

    def adopt_namespace_of(self, other: object) -> None:
        self._adopted_queues |= getattr(other, "known_queues", frozenset())

    def drop_namespace(self) -> None:
        queues = self.known_queues | self._adopted_queues
        if queues:
            self.delete_topology(sorted(queues))
