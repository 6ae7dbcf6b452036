"""oddjob demo: enqueue a few jobs into a local folder, then watch a real worker process run them.

Run it with ``nox -s demo`` (or ``python examples/demo/run.py`` with oddjob installed).
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.chdir(HERE)  # oddjob.toml and demo_jobs.py live here
sys.path.insert(0, str(HERE))

from demo_jobs import (  # noqa: E402
    Line,
    Order,
    charge_expired_card,
    fetch_rates,
    flaky_upload,
    invoice,
    reminder,
    send_welcome,
)

from oddjob_core import Oddjob, call  # noqa: E402


def oddjob(*args: str) -> None:
    """Run the real CLI, as a user would."""
    print(f"\n$ oddjob {' '.join(args)}", flush=True)
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    subprocess.run([sys.executable, "-m", "oddjob_core", *args], check=True, env=env)


def main() -> None:
    shutil.rmtree(HERE / ".oddjob-demo", ignore_errors=True)
    app = Oddjob()  # reads ./oddjob.toml: filesystem store in .oddjob-demo
    order = Order(
        number=1042,
        placed=dt.datetime.now(dt.UTC),
        lines=[
            Line("book", 2, decimal.Decimal("12.50")),
            Line("pen", 3, decimal.Decimal("1.20")),
        ],
    )
    print("Enqueueing jobs into", app.settings.backends["filesystem"]["path"])
    app.enqueue_many([call(send_welcome, i, f"user{i}@example.com") for i in range(1, 4)])
    app.enqueue(invoice, order, dt.date.today() + dt.timedelta(days=30))
    app.enqueue(flaky_upload, "report.pdf")
    failing = app.enqueue(charge_expired_card, "4111-xxxx")
    app.enqueue(fetch_rates, "USD")
    app.options(delay=3).enqueue(reminder, "scheduled 3 seconds ahead")
    app.options(delay=dt.timedelta(days=3)).enqueue(reminder, "due in 3 days: stays scheduled")
    app.close()

    oddjob("queues")
    oddjob("worker", "--burst", "--burst-wait", "5", "--verbose")
    oddjob("queues")
    oddjob("jobs", "show", str(failing))
    print("\nDone. The job due in 3 days is still scheduled; `oddjob jobs list` shows everything.")


if __name__ == "__main__":
    main()
