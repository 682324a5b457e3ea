"""The life of a batch of events in the worker, apart from Faust (stream/app.py only wires it up).

:meth:`Worker.handle` takes a batch (messages that carry what acknowledges them) and:

1. folds it (Pipeline.fold), one batch at a time under the fold lock, in partition order;
2. starts a task that recommends (Pipeline.recommend, overlapping the next batch's fold), publishes
   once the previous batch has published, learns (Pipeline.learn), and hands the batch's tallies
   and the events to acknowledge to the checkpoint (stream/checkpoint.py), which commits them;
3. keeps at most ``RECO_BATCHES_IN_FLIGHT`` such tasks.

While the online store cannot be read, the events of sessions the worker does not hold are
deferred: recommended from the event alone, and folded, forwarded and acknowledged, in their
order, once it can be read again; later events of their sessions wait behind them.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from functools import partial
from typing import Awaitable, Callable

from contract.settings import Settings
from features.cache import STORE_ERRORS
from stream import metrics
from stream.checkpoint import Checkpoint
from stream.metrics import timed
from stream.pipeline import BatchResult, Folded, FoldedEvent, Pipeline, RawMessage
from stream.retry import until_done

log = logging.getLogger(__name__)
# Batches of events deferred while the online store is down, at most (RECO_BATCH_SIZE events
# each): beyond, batches wait for the store again, so memory stays bounded through a long outage.
MAX_DEFERRED_BATCHES = 50
Publish = Callable[[BatchResult], Awaitable[None]]


class Worker:
    def __init__(self, settings: Settings, pipeline: Pipeline, checkpoint: Checkpoint, publish: Publish):
        """``publish`` sends a batch's dead letters and recommendations and returns once the broker
        has acknowledged every record."""
        self.settings, self.pipeline, self.checkpoint, self.publish = settings, pipeline, checkpoint, publish
        self.max_deferred = settings.batch_size * MAX_DEFERRED_BATCHES  # events
        self.in_flight: deque[asyncio.Task[None]] = deque()  # recommend-and-publish, oldest first
        self.deferred: list[FoldedEvent] = []  # in the order they came
        self.lock = asyncio.Lock()  # folds run one at a time, in partition order
        checkpoint.hold_while(lambda: bool(self.deferred))

    async def handle(self, messages: list[RawMessage]) -> None:
        """One batch; returns once fewer than RECO_BATCHES_IN_FLIGHT batches are unpublished."""
        async with self.lock:
            await self._fold_deferred()
            waiting = {d.event.session_id for d in self.deferred}
            fold = partial(self.pipeline.fold, degrade=len(self.deferred) < self.max_deferred, waiting=waiting)
            folded = await until_done(fold, messages)
            deferred = folded.deferred
            self.deferred += deferred
            metrics.EVENTS_DEFERRED_WAITING.set(len(self.deferred))
            held = {id(d.message) for d in deferred}
            done = [m.origin for m in messages if id(m) not in held]  # dead letters included
            previous = self.in_flight[-1] if self.in_flight else None
            self.in_flight.append(asyncio.ensure_future(self._recommend_and_publish(folded, done, previous)))
        # Triton ranks one batch while the worker folds the next; a bug in a task stops the agent.
        while self.in_flight and (len(self.in_flight) >= self.settings.batches_in_flight or self.in_flight[0].done()):
            await self.in_flight.popleft()

    async def fold_deferred(self) -> None:
        """One try at folding the deferred events, between batches (the timer's: they are folded
        when the store is back even if no new event arrives)."""
        async with self.lock:
            await self._fold_deferred()

    async def _fold_deferred(self) -> None:
        """Under the lock. On success their tallies join the checkpoint's outbox and they are
        acknowledged once those are sent and the state written; their provisional
        recommendations stand."""
        if not self.deferred:
            return
        try:
            folded = await self.pipeline.fold([d.message for d in self.deferred])
        except Exception as exc:  # any failing dependency, as until_done retries: they stay deferred
            if not isinstance(exc, STORE_ERRORS):
                log.warning("folding %d deferred events failed, trying again later: %r", len(self.deferred), exc)
            return  # the next batch or the timer tries again
        events, self.deferred = [d.message.origin for d in self.deferred], []
        metrics.EVENTS_DEFERRED_WAITING.set(0)
        log.info("folded %d deferred events: the online store is readable again", len(events))
        self.checkpoint.add(folded.tallies, events)

    async def _recommend_and_publish(self, folded: Folded, done: list, previous: asyncio.Task | None) -> None:
        """``done``: what to acknowledge once the batch's tallies are sent and the state written
        (not the deferred events')."""
        result = await until_done(self.pipeline.recommend, folded)
        if previous is not None:  # a session's recommendations are published in the order of its events
            await asyncio.wait([previous])
        with timed("publish"):
            await until_done(self.publish, result)
            published_s = time.time()
            metrics.RECOMMENDATIONS_PUBLISHED.inc(len(result.recommendations))
            for ts in result.event_ts:
                metrics.END_TO_END_LATENCY.observe(max(0.0, published_s - ts / 1000))
        with timed("learn"):
            self.pipeline.learn(folded, result)
        self.checkpoint.add(folded.tallies, done)
