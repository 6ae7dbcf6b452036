"""The in-memory store cannot be shared between processes, so this one process does it all:
enqueue (timed), then run the worker on a thread while the driver watches the counter
(the drain rate and CPU per job are measured here, precisely), then the idle-latency samples. Parameters come in $BENCH_MEMORY (JSON); results go to
the file it names."""

import json
import os
import random
import threading
import time

from bench.jobs import RECORD, TIMES
from bench.jobs import noop_timed as noop
from bench.plugin_cost import registry_for
from oddjob_core import Oddjob, call

p = json.loads(os.environ["BENCH_MEMORY"])
n, n_single, samples, budget = p["n"], p["single"], p["samples"], p["latency_budget"]
plugins = os.environ.get("BENCH_PLUGINS", "installed")
app = Oddjob(storage="memory", allowed_prefixes=["bench"], registry=registry_for(plugins))
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

cpu0 = time.process_time()
executor = app.make_executor()
executor.default_workers = 8
runner = threading.Thread(target=executor.run, kwargs={"handle_signals": False}, daemon=True)
runner.start()

fd = os.open(os.environ["BENCH_COUNTER"], os.O_RDONLY)
deadline = time.monotonic() + 600
while os.fstat(fd).st_size < n * RECORD.size and time.monotonic() < deadline:
    time.sleep(0.01)
# measured here, not by the driver: a drain of a few thousand jobs takes ~0.1 s, the
# driver's /proc CPU counters tick every 10 ms; each job notes when it ran (perf_counter)
if os.fstat(fd).st_size >= n * RECORD.size and TIMES[1] > TIMES[0]:
    result["drain"] = (n - 1) / (TIMES[1] - TIMES[0])
    result["client_cpu_per_1k"] = (time.process_time() - cpu0) / n * 1000

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
