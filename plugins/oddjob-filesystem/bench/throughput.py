"""Quick throughput check of the filesystem store (not a test; numbers vary with the disk).

    python plugins/oddjob-filesystem/bench/throughput.py [N]

Prints, with fsync on and off: batch enqueue jobs/s; the raw storage loop
(claim 10 at a time + complete each, one thread); and an engine drain of no-op
jobs by one worker process with 8 threads (the issue's benchmark workload).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

from oddjob_filesystem import FilesystemOptions, FilesystemStorage

from oddjob_core import Oddjob, call
from oddjob_core.model import JobState
from oddjob_core.testing import targets


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def enqueue(path: str, fsync: bool, n: int) -> float:
    store = FilesystemStorage(FilesystemOptions(path=path, fsync=fsync))
    with Oddjob(storage_instance=store) as app:
        started = time.perf_counter()
        for i in range(0, n, 500):
            app.enqueue_many([call(targets.noop, j) for j in range(i, min(n, i + 500))])
        return n / (time.perf_counter() - started)


def raw_loop(fsync: bool, n: int) -> str:
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        rate_in = enqueue(tmp, fsync, n)
        store = FilesystemStorage(FilesystemOptions(path=tmp, fsync=fsync))
        done, c0, t0 = 0, cpu(), time.perf_counter()
        while claims := store.claim("default", 10, 30.0, "bench"):
            for claim in claims:
                store.complete(claim, None)
                done += 1
        elapsed, spent = time.perf_counter() - t0, cpu() - c0
        assert done == n, done
        return (
            f"enqueue (batches of 500) {rate_in:8.0f} jobs/s | claim+complete loop "
            f"{n / elapsed:7.0f} jobs/s, {spent / n * 1000:.2f} CPU s/1k"
        )


def drain(fsync: bool, n: int) -> str:
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        enqueue(tmp, fsync, n)
        store = FilesystemStorage(FilesystemOptions(path=tmp, fsync=fsync))
        app = Oddjob(storage_instance=store, allowed_prefixes=["oddjob_core.testing"])
        c0, t0 = cpu(), time.perf_counter()
        app.run_worker(["default"], workers=8, burst=True, handle_signals=False)
        elapsed, spent = time.perf_counter() - t0, cpu() - c0
        counts = store.counts("default")["default"]
        assert counts.get(JobState.SUCCEEDED) == n, counts
        return f"engine drain, 8 threads {n / elapsed:7.0f} jobs/s, {spent / n * 1000:.2f} CPU s/1k"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    print(f"N={n}, folder {Path('.').resolve()}")
    for fsync in (True, False):
        print(f"fsync={fsync!s:5} {raw_loop(fsync, n)}")
        print(f"fsync={fsync!s:5} {drain(fsync, n)}")


if __name__ == "__main__":
    main()
