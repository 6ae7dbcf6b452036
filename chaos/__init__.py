"""Fault injection against real workers and private servers: ``nox -s chaos``.

Every run starts its own PostgreSQL cluster (``initdb`` in a temporary folder, on
another port) and its own RabbitMQ node (its own node name, ports, cookie and
mnesia folder); the shared servers on 5432/5672 are never touched. Jobs log
every execution to files outside the store (``chaos.jobs``), so the verdict does
not trust the store it is judging. See ``python -m chaos --help``.
"""
