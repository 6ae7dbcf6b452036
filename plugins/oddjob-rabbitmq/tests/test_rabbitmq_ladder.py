"""The delay ladder's routing, checked without a broker against a model of topic exchanges.

The model routes a message the way RabbitMQ does: a topic exchange matches the
routing key against each binding pattern (``*`` = one word); an exchange-to-
exchange binding routes on at once; a queue holds the message for its
``x-message-ttl`` and then dead-letters it to ``x-dead-letter-exchange``
(keeping the key unless ``x-dead-letter-routing-key`` replaces it). The delays
add up along the way; the message must end in the work queue after exactly the
requested number of seconds, passing each level at most once.
"""

from __future__ import annotations

import random

import pytest
from oddjob_rabbitmq import topology as topo

LEVELS = 28


def topic_matches(pattern: str, key: str) -> bool:
    """RabbitMQ's topic matching for patterns made of literal words, ``*`` and a trailing ``#``."""
    p, k = pattern.split("."), key.split(".")
    if p and p[-1] == "#":
        return len(k) >= len(p) - 1 and all(a in ("*", b) for a, b in zip(p[:-1], k, strict=False))
    return len(p) == len(k) and all(a in ("*", b) for a, b in zip(p, k, strict=True))


def deliver(t: topo.Topology, delay: int) -> tuple[str, int, list[str]]:
    """Route a message with ``delay`` through the model; return (final queue, seconds, queues)."""
    queues = {q.name: q for q in [t.work, t.failed, *t.delay_queues]}
    exchanges = set(t.exchanges)
    exchange, key = t.entry_exchange, topo.routing_key(delay, t.levels)
    elapsed, visited = 0, []
    for _ in range(10 * t.levels):
        targets = [b for b in t.bindings if b.source == exchange and topic_matches(b.pattern, key)]
        assert len(targets) == 1, f"exchange {exchange} routes {key} to {len(targets)} places"
        b = targets[0]
        if b.to_exchange:
            assert b.destination in exchanges
            exchange = b.destination
            continue
        queue = queues[b.destination]
        if queue.name == t.work.name:
            return queue.name, elapsed, visited
        visited.append(queue.name)
        elapsed += queue.arguments["x-message-ttl"] // 1000
        dlx = queue.arguments["x-dead-letter-exchange"]
        key = queue.arguments.get("x-dead-letter-routing-key", key)
        if dlx == "":  # the default exchange: routing key = queue name
            assert key in queues
            if key == t.work.name:
                return key, elapsed, visited
            raise AssertionError(f"dead-lettered to {key}")
        exchange = dlx
    raise AssertionError("message loops in the ladder")


def model(delay: int) -> int:
    """How many delay queues a message visits: one per set bit."""
    return bin(delay).count("1")


@pytest.fixture(scope="module")
def ladder() -> topo.Topology:
    return topo.build(
        "emails",
        prefix="oddjob.",
        levels=LEVELS,
        queue_type="quorum",
        delay_queue_type="quorum",
        delivery_limit=20,
    )


MINUTE, HOUR, DAY, YEAR = 60, 3600, 86400, 365 * 86400


@pytest.mark.parametrize(
    "delay",
    [0, 1, 2, 3, 7, 59, MINUTE, 61, HOUR - 1, HOUR, 2 * DAY, 3 * DAY + 17, 90 * DAY, YEAR, 8 * YEAR]
    + [2**n for n in range(LEVELS)]
    + [2**n - 1 for n in range(1, LEVELS + 1)],
)
def test_delay_reaches_the_work_queue_after_exactly_its_seconds(
    ladder: topo.Topology, delay: int
) -> None:
    final, elapsed, visited = deliver(ladder, delay)
    assert final == "oddjob.emails"
    assert elapsed == delay
    assert len(visited) == model(delay)
    levels = [int(name.rsplit(".", 1)[1]) for name in visited]
    assert levels == sorted(levels, reverse=True), "levels are visited from the top down"
    assert [2**n for n in levels] == [2**n for n in range(LEVELS - 1, -1, -1) if delay >> n & 1]


def test_random_delays_match_the_model(ladder: topo.Topology) -> None:
    rng = random.Random(7)
    for _ in range(2000):
        delay = rng.randrange(0, ladder.max_delay + 1)
        _, elapsed, visited = deliver(ladder, delay)
        assert (elapsed, len(visited)) == (delay, model(delay))


def test_max_delay_is_about_eight_and_a_half_years(ladder: topo.Topology) -> None:
    assert ladder.max_delay == 2**28 - 1
    assert 8.4 * YEAR < ladder.max_delay < 8.6 * YEAR
    with pytest.raises(ValueError, match="outside the ladder"):
        topo.routing_key(ladder.max_delay + 1, LEVELS)


def test_delay_rounds_up_and_caps_at_one_trip() -> None:
    assert topo.delay_seconds(-5, LEVELS) == 0
    assert topo.delay_seconds(0, LEVELS) == 0
    assert topo.delay_seconds(0.001, LEVELS) == 1  # never early
    assert topo.delay_seconds(1.5, LEVELS) == 2
    assert topo.delay_seconds(20 * YEAR, LEVELS) == 2**LEVELS - 1  # hops again on arrival


def test_routing_key_lists_bits_most_significant_first() -> None:
    assert topo.routing_key(5, 4) == "0.1.0.1"
    assert topo.routing_key(0, 3) == "0.0.0"


def test_every_level_has_one_ttl_and_dead_letters_downwards(ladder: topo.Topology) -> None:
    for n, queue in enumerate(ladder.delay_queues):
        assert queue.arguments["x-message-ttl"] == 1000 * 2**n
        assert queue.arguments["x-queue-type"] == "quorum"
        assert queue.arguments["x-dead-letter-strategy"] == "at-least-once"
        expected = ladder.exchanges[n - 1] if n else ""
        assert queue.arguments["x-dead-letter-exchange"] == expected
    assert ladder.delay_queues[0].arguments["x-dead-letter-routing-key"] == "oddjob.emails"


def test_work_queue_dead_letters_poison_jobs_to_the_failed_queue(ladder: topo.Topology) -> None:
    args = ladder.work.arguments
    assert args["x-delivery-limit"] == 20
    assert args["x-dead-letter-routing-key"] == ladder.failed.name == "oddjob.emails.failed"


def test_classic_queues_have_no_quorum_only_arguments() -> None:
    t = topo.build(
        "q",
        prefix="p.",
        levels=4,
        queue_type="classic",
        delay_queue_type="classic",
        delivery_limit=5,
    )
    assert "x-delivery-limit" not in t.work.arguments
    assert all("x-dead-letter-strategy" not in q.arguments for q in t.delay_queues)
    for delay in range(16):
        assert deliver(t, delay)[:2] == ("p.q", delay)


@pytest.mark.parametrize("name", ["", "amq.q", "x" * 250])
def test_unusable_queue_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        topo.check_queue_name(name, "")
