"""A real worker process serves /metrics over HTTP with the exact counts of what it ran."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from oddjob_prometheus.depth import QueueDepth
from oddjob_prometheus.metrics import OTHER_TARGET, JobMetrics
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from oddjob_core import Oddjob
from oddjob_core.model import JobState, RetryPolicy
from oddjob_core.testing import targets
from oddjob_core.testing.workers import WorkerProcesses, make_worker_env, settings_env, wait_for

T = "oddjob_core.testing.targets:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of http://127.0.0.1:port/metrics as {(name, sorted labels): value}; {} if down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def finished(samples: dict[Any, float], target: str, outcome: str) -> float:
    key = (
        "oddjob_jobs_finished_total",
        (("outcome", outcome), ("queue", "default"), ("target", target)),
    )
    return samples.get(key, 0.0)


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, Any]:
    return {
        "storage": "filesystem",
        "filesystem": {"path": str(tmp_path / "store")},
        "allowed_prefixes": ["oddjob_core.testing.targets"],
        "prometheus": {"depth_cache_seconds": 0},
    }


def test_worker_serves_exact_counts_of_successes_retries_and_failures(
    tmp_path: Path, settings: dict[str, Any]
) -> None:
    with Oddjob(**settings) as app:
        for i in range(3):
            app.enqueue(targets.noop, i)
        fast = RetryPolicy(max_retries=2, min_wait=0.1, max_wait=0.1, jitter=0)
        app.options(retry=fast).enqueue(targets.fail_times, "flaky", 1)
        app.options(retry=RetryPolicy(max_retries=0)).enqueue(targets.raise_value_error, "bad")
    port = free_port()
    expected = {
        (T + "noop", "succeeded"): 3,
        (T + "fail_times", "retrying"): 1,
        (T + "fail_times", "succeeded"): 1,
        (T + "raise_value_error", "failed"): 1,
    }
    with WorkerProcesses(make_worker_env(settings_env(settings)), cwd=tmp_path) as workers:
        workers.start("--metrics-port", str(port))

        def counted() -> bool:
            samples = scrape(port)
            return all(finished(samples, t, o) == n for (t, o), n in expected.items())

        assert wait_for(counted, 60), f"metrics never matched {expected}:\n{workers.log(0)}"
        samples = scrape(port)
        workers.terminate_all()
    outcomes = {
        (dict(labels)["target"], dict(labels)["outcome"]): value
        for (name, labels), value in samples.items()
        if name == "oddjob_jobs_finished_total"
    }
    assert outcomes == expected  # nothing counted twice, no other outcome
    assert samples[("oddjob_attempt_duration_seconds_count", (("queue", "default"),))] == 6
    assert samples[("oddjob_start_lag_seconds_count", (("queue", "default"),))] == 6
    assert samples[("oddjob_jobs_in_flight", (("queue", "default"),))] == 0
    depth = {
        dict(labels)["state"]: value
        for (name, labels), value in samples.items()
        if name == "oddjob_queue_depth" and dict(labels)["queue"] == "default"
    }
    assert depth.get("succeeded") == 4
    assert depth.get("failed") == 1


def test_a_worker_without_a_port_serves_nothing(tmp_path: Path, settings: dict[str, Any]) -> None:
    port = free_port()
    settings["prometheus"]["port"] = port
    with WorkerProcesses(make_worker_env(settings_env(settings)), cwd=tmp_path) as workers:
        workers.start()
        assert wait_for(lambda: bool(scrape(port)), 30), workers.log(0)
    del settings["prometheus"]["port"]
    port = free_port()
    with WorkerProcesses(make_worker_env(settings_env(settings)), cwd=tmp_path) as workers:
        workers.start()
        assert not wait_for(lambda: bool(scrape(port)), 3)
        assert workers.processes[0].poll() is None, workers.log(0)


COUNT_IN_CHILD = """
from prometheus_client import CollectorRegistry
from oddjob_prometheus.metrics import JobMetrics
metrics = JobMetrics(CollectorRegistry())
metrics.trusts = lambda target: target == "app.jobs:send"
metrics.count("q", "app.jobs:send", "succeeded")
for i in range(50):
    metrics.count("q", f"evil.module{i}:f", "failed")
metrics.count("q", "app.jobs:send", "target_missing")
"""


@pytest.mark.parametrize("multiprocess", [False, True], ids=["one-process", "multiprocess"])
def test_targets_the_worker_does_not_trust_are_counted_as_other(
    multiprocess: bool, tmp_path: Path
) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)} if multiprocess else None
    if multiprocess:  # prometheus-client picks its value store at import: a fresh process
        subprocess.run([sys.executable, "-c", COUNT_IN_CHILD], env=env, check=True, timeout=60)
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        exec(COUNT_IN_CHILD.replace("CollectorRegistry()", "registry"), {"registry": registry})
    samples = {
        tuple(sorted(s.labels.items())): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "oddjob_jobs_finished_total"
    }
    assert samples == {
        (("outcome", "succeeded"), ("queue", "q"), ("target", "app.jobs:send")): 1,
        (("outcome", "failed"), ("queue", "q"), ("target", OTHER_TARGET)): 50,
        (("outcome", "target_missing"), ("queue", "q"), ("target", OTHER_TARGET)): 1,
    }


def test_histograms_put_each_sample_in_its_le_bucket() -> None:
    registry = CollectorRegistry()
    sink = JobMetrics(registry, multiprocess=False).sink
    for value in (0.005, 0.0051, 1.0, 7200.0):
        sink.finished_batch([("q", "t", "succeeded", value, 0.0)])
    buckets = {
        s.labels["le"]: s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "oddjob_attempt_duration_seconds_bucket"
    }
    assert (buckets["0.005"], buckets["0.01"], buckets["1"], buckets["3600"]) == (1, 2, 3, 3)
    assert buckets["+Inf"] == 4


def test_queue_depth_costs_one_storage_call_per_cache_period() -> None:
    clock = [0]

    def counts() -> dict[str, dict[JobState, int]]:
        clock[0] += 1
        return {"mail": {JobState.READY: clock[0]}}

    depth = QueueDepth(counts, cache_seconds=60)
    values = [next(iter(depth.collect())).samples[0].value for _ in range(20)]
    assert depth.calls == 1
    assert values == [1] * 20
    fresh = QueueDepth(counts, cache_seconds=0)
    fresh.current()
    fresh.current()
    assert fresh.calls == 2


def test_queue_depth_serves_the_last_answer_when_storage_fails() -> None:
    answers: list[Any] = [{"q": {JobState.READY: 7}}, OSError("database down")]

    def counts() -> dict[str, dict[JobState, int]]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    depth = QueueDepth(counts, cache_seconds=0)
    assert depth.current() == {"q": {JobState.READY: 7}}
    assert depth.current() == {"q": {JobState.READY: 7}}


def test_recorded_attempts_are_counted_by_outcome_with_their_timings() -> None:
    """The per-batch path the worker takes (``record``): every outcome, label and timing."""
    import time
    from datetime import UTC, datetime, timedelta

    from oddjob_core.engine.runner import Failure, Lost, Outcome, Success
    from oddjob_core.model import AttemptError, Claim
    from oddjob_core.testing.envelopes import make_envelope

    registry = CollectorRegistry()
    metrics = JobMetrics(registry, multiprocess=False)
    metrics.trusts = lambda target: target == "app.jobs:send"
    now = time.time()
    due = datetime.fromtimestamp(now - 2.0, UTC)  # due 2 s before it started

    def claim(target: str) -> Claim:
        job = make_envelope(target=target, queue="q", run_at=due)
        return Claim(job=job, token="t", owner="w", lease_expires_at=due + timedelta(60))

    error = AttemptError(type="E", message="m", traceback="", attempt=1, at=due)
    batch = [
        Success(claim("app.jobs:send"), None, None, 0.003, now),
        Success(claim("app.jobs:send"), None, None, 0.3, now),
        Success(claim("evil.module:f"), None, None, 0.003, now),
        Failure(claim("app.jobs:send"), error, missing=True),  # never started: no timing
        Failure(claim("app.jobs:send"), error, False, 0.003, now),
        Lost(claim("app.jobs:send"), "lease lost", 0.003, now),
    ]
    outcomes = [Outcome.SUCCEEDED] * 3 + [Outcome.FAILED] * 2 + [Outcome.LOST]
    metrics.record(batch, outcomes)
    metrics.record(batch[:1], outcomes[:1])  # the counters found again, not made twice
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }
    finished = {
        (dict(labels)["target"], dict(labels)["outcome"]): value
        for (name, labels), value in samples.items()
        if name == "oddjob_jobs_finished_total"
    }
    assert finished == {
        ("app.jobs:send", "succeeded"): 3,
        (OTHER_TARGET, "succeeded"): 1,
        (OTHER_TARGET, "target_missing"): 1,
        ("app.jobs:send", "failed"): 1,
        ("app.jobs:send", "lease_lost"): 1,
    }
    q = (("queue", "q"),)
    assert samples[("oddjob_attempt_duration_seconds_count", q)] == 6  # all but the missing one
    assert samples[("oddjob_attempt_duration_seconds_bucket", (("le", "0.005"), *q))] == 5
    assert samples[("oddjob_attempt_duration_seconds_sum", q)] == pytest.approx(0.003 * 5 + 0.3)
    assert samples[("oddjob_start_lag_seconds_bucket", (("le", "1"), *q))] == 0
    assert samples[("oddjob_start_lag_seconds_bucket", (("le", "2.5"), *q))] == 6
