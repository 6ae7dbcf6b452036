"""The demo's jobs: ordinary functions, registered with ``@job``."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal

import msgspec

from oddjob_core import RetryPolicy, current_job, job


class Line(msgspec.Struct):
    sku: str
    quantity: int
    price: decimal.Decimal


class Order(msgspec.Struct):
    number: int
    placed: dt.datetime
    lines: list[Line]


@job
def send_welcome(user_id: int, email: str) -> str:
    """A plain job with plain arguments."""
    return f"welcomed user {user_id} at {email}"


@job(queue="default", priority=5)
def invoice(order: Order, due: dt.date) -> str:
    """Typed arguments come back typed: a Struct with Decimals and an aware datetime."""
    total = sum(line.price * line.quantity for line in order.lines)
    assert isinstance(total, decimal.Decimal)
    return f"invoice for order {order.number}: {total} due {due.isoformat()}"


@job(retry=RetryPolicy(max_retries=3, min_wait=0.5, backoff=2.0))
def flaky_upload(name: str) -> str:
    """Fails on its first two attempts (say, a flaky network), then succeeds."""
    attempt = current_job().attempt
    if attempt <= 2:
        raise ConnectionError(f"upload of {name} timed out (attempt {attempt})")
    return f"uploaded {name} on attempt {attempt}"


@job(retry=RetryPolicy(max_retries=1, min_wait=0.5))
def charge_expired_card(card: str) -> None:
    """Fails every time: ends as failed, with each attempt's error kept."""
    raise ValueError(f"card {card} expired")


@job
def reminder(text: str) -> str:
    """Enqueued a few seconds ahead: runs no sooner than its time."""
    return f"reminder: {text} (ran at {dt.datetime.now(dt.UTC):%H:%M:%S})"


@job
async def fetch_rates(currency: str) -> dict[str, float]:
    """An ``async def`` job."""
    await asyncio.sleep(0.05)
    return {currency: 1.0, "EUR": 0.92}
