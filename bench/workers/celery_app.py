"""Celery app for the benchmark: RabbitMQ ($BENCH_AMQP_URL_VHOST), acks_late, confirms."""

import os

from celery import Celery

from bench.jobs import noop

app = Celery("bench", broker=os.environ["BENCH_AMQP_URL_VHOST"])
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    task_default_queue="bench",
    task_default_delivery_mode="persistent",
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop_task(i: int, s: str) -> None:
    noop(i, s)
