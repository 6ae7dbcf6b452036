"""The in-memory store cannot be shared between processes, so this one process does it all:
enqueue (timed), then run the worker on a thread while the driver watches the counter,
then the idle-latency samples. Parameters come in $BENCH_MEMORY (JSON); results go to
the file it names."""

import json
import os
import random
import threading
import time

from bench.jobs import RECORD, noop
from oddjob_core import Oddjob, call

p = json.loads(os.environ["BENCH_MEMORY"])
n, n_single, samples, budget = p["n"], p["single"], p["samples"], p["latency_budget"]
plugins = os.environ.get("BENCH_PLUGINS", "installed")
registry = None
if plugins == "bare":  # no entry point: the core's memory store and the threads executor only
    import oddjob_threads.plugin

    from oddjob_core.memory import plugin as memory_plugin
    from oddjob_core.plugins import PluginRegistry

    extra = [("memory", memory_plugin), ("threads", oddjob_threads.plugin)]
    registry = PluginRegistry(entry_points=False, extra=extra)
elif plugins == "traced":  # an SDK that records every span (and exports none)
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
app = Oddjob(storage="memory", allowed_prefixes=["bench"], registry=registry)
result: dict[str, object] = {}

t0 = time.perf_counter()
for i in range(n_single):
    app.enqueue(noop, i, "x")
t1 = time.perf_counter()
for start in range(n_single, n, 1000):
    app.enqueue_many([call(noop, i, "x") for i in range(start, min(n, start + 1000))])
t2 = time.perf_counter()
result["enqueue_single"] = n_single / (t1 - t0) if n_single else None
result["enqueue_batch"] = (n - n_single) / (t2 - t1) if n > n_single else None

executor = app.make_executor()
executor.default_workers = 8
runner = threading.Thread(target=executor.run, kwargs={"handle_signals": False}, daemon=True)
runner.start()

fd = os.open(os.environ["BENCH_COUNTER"], os.O_RDONLY)
deadline = time.monotonic() + 600
while os.fstat(fd).st_size < n * RECORD.size and time.monotonic() < deadline:
    time.sleep(0.01)

latencies: list[float] = []
end = time.monotonic() + budget
for k in range(samples):
    if time.monotonic() > end:
        break
    time.sleep(random.uniform(0.02, 0.05))
    before = os.fstat(fd).st_size
    start = time.monotonic()
    app.enqueue(noop, n + k, "x")
    while os.fstat(fd).st_size <= before and time.monotonic() - start < 10:
        time.sleep(0.0002)
    latencies.append(time.monotonic() - start)
result["latencies"] = latencies
with open(p["result"], "w") as f:
    json.dump(result, f)
executor.stop(5)
runner.join(10)
