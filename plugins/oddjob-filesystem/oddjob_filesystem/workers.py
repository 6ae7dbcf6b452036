"""Worker announcements as files: ``<root>/workers/<id>.json``, replaced whole on each heartbeat."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgspec

from oddjob_core.errors import StorageError
from oddjob_core.worker_registry import WorkerInfo, WorkerRegistry, live_workers

from .files import FileWriter

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(WorkerInfo).decode


class FileWorkerRegistry(WorkerRegistry):
    """The ``WorkerRegistry`` part of the filesystem store (mixed into ``FilesystemStorage``).

    One small file per worker, written atomically through ``FileWriter``; an
    expired or unreadable file is removed by whoever lists the workers.
    """

    root: Path
    _writer: FileWriter

    @property
    def _workers_dir(self) -> Path:
        return self.root / "workers"

    def worker_file(self, worker_id: str) -> Path:
        digest = hashlib.sha256(worker_id.encode("utf-8")).hexdigest()[:32]
        return self._workers_dir / f"{digest}.json"

    def announce(self, worker: WorkerInfo) -> None:
        try:
            self._workers_dir.mkdir(exist_ok=True)
            self._writer.write(self.worker_file(worker.id), _encode(worker))
        except OSError as exc:
            raise StorageError(f"cannot write the worker announcement: {exc}") from exc

    def withdraw(self, worker_id: str) -> None:
        try:
            self.worker_file(worker_id).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot remove the worker announcement: {exc}") from exc

    def workers(self) -> list[WorkerInfo]:
        found: list[WorkerInfo] = []
        try:
            paths = list(self._workers_dir.glob("*.json"))
        except OSError:
            return []
        for path in paths:
            try:
                found.append(_decode(path.read_bytes()))
            except FileNotFoundError:
                continue  # withdrawn meanwhile
            except (OSError, msgspec.DecodeError):
                _remove(path)
        live = live_workers(found)
        alive = {self.worker_file(w.id) for w in live}
        for path in paths:
            if path not in alive:
                _remove(path)
        return live


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
