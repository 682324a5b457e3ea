"""Retrying a step of the worker until its dependency (Feast, Redis, Kafka) answers again."""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, TypeVar

from tenacity import AsyncRetrying, wait_exponential

from stream import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


def count_retry(state: Any) -> None:
    exc = state.outcome.exception()
    metrics.BATCH_RETRIES.labels(type(exc).__name__).inc()
    log.warning("batch failed (attempt %d), retrying in %.1fs: %r", state.attempt_number,
                state.next_action.sleep, exc)


async def until_done(step: Callable[[T], Awaitable[R]], arg: T) -> R:
    """Runs a step until it succeeds, retrying a failed dependency (Feast, Redis, Kafka) with
    backoff. Message content cannot fail a step (it becomes a dead letter), so a retry waits for a
    dependency, and the partition waits with it."""
    async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.1, max=5), before_sleep=count_retry):
        with attempt:
            return await step(arg)
    raise AssertionError("unreachable: AsyncRetrying retries until the step succeeds")
