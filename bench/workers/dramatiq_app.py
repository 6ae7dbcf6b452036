"""Dramatiq broker and actor for the benchmark ($BENCH_AMQP_URL_VHOST)."""

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.jobs import noop

broker = RabbitmqBroker(url=os.environ["BENCH_AMQP_URL_VHOST"], confirm_delivery=True)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop_actor(i: int, s: str) -> None:
    noop(i, s)
