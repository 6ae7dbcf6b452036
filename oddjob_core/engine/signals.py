"""SIGTERM/SIGINT drain the same way for every executor: first signal stops, second exits now."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger("oddjob.worker")


def install_drain_signals(
    stop_requested: threading.Event, shutdown_timeout: float
) -> dict[int, Any]:
    """On SIGTERM/SIGINT set ``stop_requested``; on a second one exit at once.

    Returns the previous handlers for ``restore_signals`` (nothing off the main thread).
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop_requested.is_set():
            # second signal: exit now; running jobs run again once their leases expire
            log.warning(
                "received %s again: exiting without waiting for running jobs",
                signal.Signals(signum).name,
            )
            os._exit(128 + signum)
        log.info(
            "received %s: finishing running jobs (up to %.0f s), then exiting",
            signal.Signals(signum).name,
            shutdown_timeout,
        )
        stop_requested.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handle)
    return previous


def restore_signals(previous: dict[int, Any]) -> None:
    """Put back the handlers ``install_drain_signals`` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
