"""Jobs of the executor benchmarks: an I/O wait, a CPU burn, a no-op."""

from __future__ import annotations

import asyncio


async def nap(seconds: float) -> None:
    """Wait ``seconds`` on the event loop: an HTTP call's worth of idle time."""
    await asyncio.sleep(seconds)


def burn(rounds: int) -> int:
    """Pure-Python arithmetic for ``rounds`` iterations: holds the GIL the whole time."""
    total = 0
    for i in range(rounds):
        total = (total + i * i) % 1_000_003
    return total


def noop(i: int) -> None:
    """Nothing: the executor's own cost per job."""
