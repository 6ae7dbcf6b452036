"""``oddjob worker``: run queues in this process with a progress display."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import click

from ..engine.burst import DEFAULT_BURST_WAIT
from ..engine.runner import Outcome
from ..hookspecs import hookimpl
from ..logs import LogFormat, configure_logging
from ..model import AttemptError, Claim
from ..poison import check_queue_name
from .state import CliState, pass_state

log = logging.getLogger("oddjob.cli")


class JobPrinter:
    """A hook plugin that prints one line per attempt outcome (``--verbose``).

    With JSON logs each line is a log record instead, so stderr stays one JSON object a line.
    """

    def __init__(self, *, as_log: bool = False) -> None:
        self.lock = threading.Lock()
        self.as_log = as_log

    def _say(self, text: str, claim: Claim | None = None) -> None:
        if self.as_log:
            log.info(text.strip(), extra={"job": claim.job} if claim is not None else None)
            return
        with self.lock:
            click.echo(text, err=True)

    @hookimpl
    def oddjob_job_succeeded(self, claim: Claim, result: Any, duration: float) -> None:
        self._say(
            f"  ok    {claim.job.target} [{str(claim.job.id)[-12:]}] attempt "
            f"{claim.job.attempts} in {duration * 1000:.1f} ms -> {result!r}",
            claim,
        )

    @hookimpl
    def oddjob_job_retrying(self, claim: Claim, error: AttemptError, run_at: Any) -> None:
        wait = (run_at - error.at).total_seconds()
        self._say(
            f"  retry {claim.job.target} [{str(claim.job.id)[-12:]}] attempt "
            f"{claim.job.attempts} failed ({error.type}: {error.message}); next in {wait:.1f} s",
            claim,
        )

    @hookimpl
    def oddjob_job_failed(self, claim: Claim, error: AttemptError) -> None:
        self._say(
            f"  FAIL  {claim.job.target} [{str(claim.job.id)[-12:]}] after "
            f"{claim.job.attempts} attempt(s): {error.type}: {error.message}",
            claim,
        )

    @hookimpl
    def oddjob_job_target_missing(self, claim: Claim, error: AttemptError) -> None:
        self._say(f"  MISS  {claim.job.target} [{str(claim.job.id)[-12:]}]: {error.message}", claim)


def _say(text: str, as_log: bool) -> None:
    """A progress line: on stderr as text, or as a log record when logs are JSON."""
    if as_log:
        log.info(text)
    else:
        click.echo(text, err=True)


def _progress(executor: Any, stop: threading.Event, every: float, as_log: bool) -> None:
    start, last_n = time.monotonic(), 0
    while not stop.wait(every):
        n = executor.processed()
        if n != last_n:
            _say(_summary(executor, time.monotonic() - start), as_log)
            last_n = n


def _summary(executor: Any, elapsed: float) -> str:
    stats = executor.stats
    done = sum(stats.values())
    # retries are attempts, not jobs: a job retried twice counts once, as succeeded or failed
    return (
        f"[oddjob] {done} attempt(s) in {elapsed:.1f} s ({done / max(elapsed, 1e-9):.0f}/s): "
        f"{stats[Outcome.SUCCEEDED]} job(s) succeeded, {stats[Outcome.FAILED]} failed for good; "
        f"{stats[Outcome.RETRYING]} attempt(s) failed and were retried, "
        f"{stats[Outcome.LOST]} lost their lease"
    )


def _check_queues(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    for name in value:
        try:
            check_queue_name(name)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


@click.command("worker")
@click.option(
    "--queue",
    "-q",
    "queues",
    multiple=True,
    callback=_check_queues,
    help="Queue to run (repeatable; default: configured queues).",
)
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(1),
    help="Jobs run at once per queue (threads, tasks or processes, by executor).",
)
@click.option(
    "--executor",
    "executor_name",
    help="Execution backend (default: the configured one; see `oddjob plugins`).",
)
@click.option("--burst", is_flag=True, help="Exit once no job is due (for scripts and tests).")
@click.option(
    "--burst-wait",
    type=click.FloatRange(0),
    default=DEFAULT_BURST_WAIT,
    show_default=True,
    help="With --burst: keep going while a job is due within this many seconds "
    "(a quick retry is not left behind).",
)
@click.option(
    "--schedules/--no-schedules",
    default=True,
    show_default=True,
    help="Also enqueue the ticks of every schedule (any number of workers may).",
)
@click.option("--verbose", "-v", is_flag=True, help="Print every job outcome.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines as text, or one JSON object per line (default: the log_format setting).",
)
@click.option("--quiet", is_flag=True, help="No progress lines, warnings only.")
@click.option(
    "--progress-every",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between progress lines.",
)
@pass_state
def worker_command(
    state: CliState,
    queues: tuple[str, ...],
    workers: int | None,
    executor_name: str | None,
    burst: bool,
    burst_wait: float,
    schedules: bool,
    verbose: bool,
    log_format: LogFormat | None,
    quiet: bool,
    progress_every: float,
) -> None:
    """Run jobs until stopped (SIGTERM/SIGINT drain gracefully)."""
    app = state.app()
    as_log = (log_format or app.settings.log_format) == "json"
    configure_logging("json" if as_log else "text", logging.WARNING if quiet else logging.INFO)
    if verbose:
        state.registry.pm.register(JobPrinter(as_log=as_log), name="oddjob-cli-printer")
        logging.getLogger("oddjob.worker").setLevel(logging.ERROR)  # the printer says it
    scheduler = app.schedules.scheduler() if schedules else None
    executor = app.make_executor(executor_name)
    if workers is not None:
        executor.default_workers = workers
    stop = threading.Event()
    start = time.monotonic()
    reporter = None
    if not quiet:
        reporter = threading.Thread(
            target=_progress, args=(executor, stop, progress_every, as_log), daemon=True
        )
        reporter.start()
    if scheduler is not None:
        scheduler.start()
    try:
        executor.run(list(queues) or None, burst=burst, burst_wait=burst_wait)
    finally:
        if scheduler is not None:
            scheduler.stop()
        stop.set()
        if not quiet:
            _say(_summary(executor, time.monotonic() - start) + " — worker stopped", as_log)
