"""One batch through the pipeline: validate -> Feast write -> model -> tokens -> messages.

Dependencies come in through the constructor, so tests can run the same code with fakes and the
Faust agent stays a thin loop around :meth:`Pipeline.process`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from features.state import ItemStats, OnlineState, apply_events
from stream import metrics
from stream.config import Settings
from stream.explain import explain_fill_item, explain_model_item
from stream.popularity import Popularity
from stream.ranking import select_items
from stream.schemas import DeadLetter, Event, InvalidEvent, Recommendation, RecommendedItem, dead_letter, parse_event
from serving.client import ModelRanking

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawMessage:
    value: bytes
    topic: str
    partition: int
    offset: int


@dataclass
class BatchResult:
    recommendations: list[Recommendation] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    event_ts: list[int] = field(default_factory=list)  # aligned with recommendations


class FeatureStoreLike(Protocol):
    def read(self, session_ids: list[str], item_ids: list[str], user_ids: list[str]) -> OnlineState: ...
    def read_items(self, item_ids: list[str]) -> dict[str, ItemStats]: ...
    def write(self, state: OnlineState) -> None: ...


class RankerLike(Protocol):
    async def rank(self, sessions) -> tuple[list[ModelRanking], str]: ...


@contextmanager
def timed(stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        metrics.STAGE_LATENCY.labels(stage).observe(time.perf_counter() - start)


def now_ms() -> int:
    return int(time.time() * 1000)


class Pipeline:
    def __init__(self, settings: Settings, features: FeatureStoreLike, ranker: RankerLike,
                 popularity: Popularity | None = None):
        self.settings = settings
        self.features = features
        self.ranker = ranker
        self.popularity = popularity or Popularity()
        self.model_version = "unknown"

    def validate(self, messages: list[RawMessage]) -> tuple[list[Event], list[DeadLetter]]:
        events, dead = [], []
        for msg in messages:
            try:
                event = parse_event(msg.value, self.settings.max_event_bytes)
            except InvalidEvent as exc:
                metrics.EVENTS_INVALID.labels(exc.reason).inc()
                dead.append(dead_letter(msg.value, exc, msg.topic, msg.partition, msg.offset))
                continue
            metrics.EVENTS_CONSUMED.labels(event.event_type).inc()
            events.append(event)
        return events, dead

    async def process(self, messages: list[RawMessage]) -> BatchResult:
        metrics.BATCH_SIZE.observe(len(messages))
        events, dead = self.validate(messages)
        if not events:
            return BatchResult(dead_letters=dead)

        def unique(values):
            return list(dict.fromkeys(v for v in values if v is not None))

        with timed("feast_read"):
            state = await asyncio.to_thread(
                self.features.read, unique(e.session_id for e in events), unique(e.item_id for e in events),
                unique(e.user_id for e in events))
        snapshots = apply_events(state, events, self.settings.max_session_len)
        with timed("feast_write"):
            await asyncio.to_thread(self.features.write, state)
        for event in events:
            self.popularity.observe(event.item_id, state.items[event.item_id].interaction_count, event.ts)

        fallback = None
        rankings: list[ModelRanking | None] = [None] * len(events)
        with timed("triton"):
            try:
                rankings, self.model_version = await self.ranker.rank([(s.item_ids, s.event_types) for s in snapshots])
                metrics.TRITON_UP.set(1)
                metrics.MODEL_INFO.info({"version": self.model_version})
            except Exception as exc:  # any transport or server error: serve popular items instead
                log.warning("Triton call failed, serving popular items: %r", exc)
                metrics.TRITON_UP.set(0)
                fallback = "triton_unavailable"

        fill = self.popularity.top(self.settings.k * 2)
        picks = [select_items(r, set(s.purchased_items), self.settings.k, fill) for r, s in zip(rankings, snapshots)]
        with timed("feast_read"):
            categories = await asyncio.to_thread(self.categories, snapshots, picks, state)
        with timed("tokens"):
            recs = [self.recommendation(e, s, p, categories, fallback) for e, s, p in zip(events, snapshots, picks)]
        metrics.LAST_EVENT_TIMESTAMP.set(time.time())
        return BatchResult(recommendations=recs, dead_letters=dead, event_ts=[e.ts for e in events])

    def categories(self, snapshots, picks, state: OnlineState) -> dict[str, str | None]:
        """Categories of every item a token may mention; those this batch wrote are known already."""
        known = {item: stats.category_id for item, stats in state.items.items()}
        wanted = {i for s in snapshots for i in s.item_ids} | {p.item_id for ps in picks for p in ps}
        missing = sorted(wanted - known.keys())
        known.update({item: stats.category_id for item, stats in self.features.read_items(missing).items()})
        return known

    def recommendation(self, event: Event, session, picks, categories, fallback: str | None) -> Recommendation:
        items = []
        for pick in picks:
            if pick.from_model:
                tokens = explain_model_item(pick.item_id, session, pick.attr_index, pick.attr_drop, categories,
                                            self.popularity)
            else:
                tokens = explain_fill_item(pick.item_id, self.popularity, fallback)
            items.append(RecommendedItem(item_id=pick.item_id, score=round(pick.score, 6), explanation=tokens))
        reason = fallback or (None if len(items) == self.settings.k else "too_few_candidates")
        if reason:
            metrics.FALLBACKS.labels(reason).inc()
        return Recommendation(event_id=event.event_id, session_id=event.session_id, user_id=event.user_id,
                              items=items, model_version=self.model_version if not fallback else "fallback",
                              generated_at=now_ms(), fallback=reason)
