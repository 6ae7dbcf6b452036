"""The filesystem store's shared key/value table: one small file per key under ``<root>/kv/``.

A key's ``/`` becomes ``~`` in the file name (keys never contain ``~``). A
write stages the value in tmp/ and renames it over the key's file, so readers
see the old or the new value whole, never half.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from oddjob_core.keyvalue import KeyValueStore, check_key

from .files import FileWriter


class FilesystemKeyValue(KeyValueStore):
    """Mixed into ``FilesystemStorage``; call ``_kv_init`` from its constructor."""

    _kv_folder: Path
    _kv_writer: FileWriter

    def _kv_init(self, root: Path, writer: FileWriter) -> None:
        self._kv_folder = root / "kv"  # made by the first write
        self._kv_writer = writer

    def kv_read(self, prefix: str) -> dict[str, bytes]:
        start = prefix.replace("/", "~")
        out: dict[str, bytes] = {}
        try:
            entries = list(os.scandir(self._kv_folder))
        except FileNotFoundError:
            return out
        for entry in entries:
            if entry.name.startswith(start):
                try:
                    with open(entry.path, "rb") as f:
                        out[entry.name.replace("~", "/")] = f.read()
                except FileNotFoundError:
                    continue  # deleted since the listing
        return out

    def kv_write(self, items: Mapping[str, bytes | None]) -> None:
        for key, value in items.items():
            path = self._kv_folder / check_key(key).replace("/", "~")
            if value is None:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            else:
                self._kv_folder.mkdir(exist_ok=True)
                self._kv_writer.write(path, bytes(value))
