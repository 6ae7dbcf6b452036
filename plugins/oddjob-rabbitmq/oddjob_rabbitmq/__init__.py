"""oddjob storage ``rabbitmq``: one self-contained message per job on RabbitMQ (aio-pika)."""

from __future__ import annotations

from .options import RabbitOptions
from .storage import RabbitStorage

__all__ = ["RabbitOptions", "RabbitStorage"]
