"""One batch through the pipeline, one named stage at a time:

    fold:      validate -> read_state -> fold_events          (batch after batch, in partition order)
    recommend: rank -> select -> read_categories -> explain   (may overlap the next batch's fold)
               rank -> read_categories -> select -> explain   (with RECO_DIVERSITY > 0: the category
                                                               re-rank needs every candidate's category)
    learn:     count the exposure, attribute each event to what its session was recommended
               before, then remember this batch's recommendations  (after publishing, in batch order)

Only fold and learn change state; recommend only reads it.

State lives in the worker (features/cache.py): Feast is read only on a miss and written in the
background (stream/checkpoint.py). Dependencies come in through the constructor, so tests can run
the same code with fakes; stream/worker.py:Worker calls fold, recommend and learn in that order and
publishes between the last two. Each stage is timed under its own name in
``reco_stage_latency_seconds{stage}``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Protocol, Sequence

from contract.messages import (
    DeadLetter,
    Event,
    InvalidEvent,
    Recommendation,
    RecommendedItem,
    Tally,
    dead_letter,
    parse_event,
)
from contract.ranking import Candidate
from contract.settings import Settings
from contract.vocab import FallbackReason
from features.cache import StateCache
from features.feedback import attribute, rank_bucket, remember
from features.privacy import pseudonym
from features.state import OnlineState, SessionState, Shown, apply_events, apply_session, is_first_event
from serving.online.client import TRITON_ERRORS, SessionRow
from stream import metrics
from stream.catalogue import LiveCatalogue
from stream.explain import explain_fill_item, explain_model_item, session_categories
from stream.live_exposure import Exposure
from stream.metrics import timed
from stream.popularity import Popularity
from stream.selection import live_only, select_items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawMessage:
    value: bytes
    topic: str
    partition: int
    offset: int
    # What acknowledges this message (the Faust event); the pipeline never reads it.
    origin: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class FoldedEvent:
    """One valid event of a batch after the fold."""

    event: Event  # with pseudonymous ids
    message: RawMessage  # where it came from
    session: SessionState  # right after the event (for a deferred one: from its deferred events alone)
    published_user_id: str | None  # what its recommendation carries
    fresh: bool  # False: a redelivered event (its recommendation is published again, not counted)
    # Its session could not be read (the online store is down) or waits behind such an event:
    # recommended from the event alone, flagged features_unavailable, and not folded, counted or
    # acknowledged; the worker folds it again later.
    deferred: bool
    tally: Tally | None  # its share of the item and user counters, for their owners (None: deferred)


@dataclass
class Folded:
    """A batch after its state changes: one record per valid event, in batch order, and a dead
    letter for each other message."""

    events: list[FoldedEvent] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    @property
    def tallies(self) -> list[Tally]:
        return [e.tally for e in self.events if e.tally is not None]

    @property
    def deferred(self) -> list[FoldedEvent]:
        return [e for e in self.events if e.deferred]


@dataclass
class BatchResult:
    recommendations: list[Recommendation] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    event_ts: list[int] = field(default_factory=list)  # aligned with recommendations


class RankerLike(Protocol):
    async def rank(self, sessions: Sequence[SessionRow]) -> tuple[Sequence[Iterable[Candidate]], str, str]:
        """(candidates per session, model version, the catalogue that model was trained on)"""


def tally(event: Event, session: SessionState, source: tuple[int, int]) -> Tally:
    """``event``'s share of its item's and user's counters; ``session`` is its state right after it."""
    # model_construct: the fields come from a validated Event and the worker's own state.
    return Tally.model_construct(event_id=event.event_id, event_type=event.event_type, session_id=event.session_id,
                                 user_id=event.user_id, item_id=event.item_id, category_id=event.category_id,
                                 session_is_new=is_first_event(session, event), source_partition=source[0],
                                 source_offset=source[1])


def unique(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v is not None))


class Pipeline:
    def __init__(self, settings: Settings, state: StateCache, ranker: RankerLike,
                 popularity: Popularity | None = None, exposure: Exposure | None = None):
        if not 0.0 <= settings.diversity <= 1.0:
            raise ValueError(f"RECO_DIVERSITY must be within [0, 1], got {settings.diversity}")
        self.settings = settings
        self.state = state
        self.ranker = ranker
        self.popularity = popularity or Popularity()
        self.exposure = exposure or Exposure(self.popularity)
        self.catalogue = LiveCatalogue(settings.catalogue, self.popularity.counts)
        self.pseudonym_key = settings.pseudonym_key.get_secret_value().encode()

    async def fold(self, messages: list[RawMessage], degrade: bool = False, waiting: Collection[str] = ()) -> Folded:
        """The stages that must run batch after batch, in partition order: they change the state.

        With ``degrade``, a session the online store cannot give (it is down) and the worker does
        not hold, or one in ``waiting`` (deferred before), is not folded: its events are deferred
        (``Folded.deferred``) and recommended from the event alone. Without, such a read raises."""
        metrics.BATCH_SIZE.observe(len(messages))
        with timed("validate"):
            valid, dead = self.validate(messages)
            published = [e.user_id for e, _ in valid] if self.settings.publish_user_id else None
            events = [self.pseudonymize(e) for e, _ in valid]
        if not events:
            return Folded([], dead)
        with timed("read_state"):
            session_ids = unique(e.session_id for e in events)
            readable, item_ids = [s for s in session_ids if s not in waiting], unique(e.item_id for e in events)
            if degrade:
                state, unread = await self.state.load_available(readable, item_ids)
            else:
                state, unread = await self.state.load(readable, item_ids), set()
            blocked = unread | (set(session_ids) - set(readable))
        with timed("fold_events"):
            kept = [e for e in events if e.session_id not in blocked]
            folded = iter(zip(*self.fold_events(state, kept))) if kept else iter(())
            provisional: dict[str, SessionState] = {}  # from the deferred events alone, never stored
            records = []
            for event, (_, message), user_id in zip(events, valid, published or [e.user_id for e in events]):
                if event.session_id in blocked:
                    session = apply_session(provisional.get(event.session_id, SessionState()), event,
                                            self.settings.max_session_len)
                    provisional[event.session_id] = session
                    # not fresh: nothing to learn from until it is folded
                    records.append(FoldedEvent(event, message, session, user_id, False, True, None))
                else:
                    session, new = next(folded)
                    records.append(FoldedEvent(event, message, session, user_id, new, False,
                                               tally(event, session, (message.partition, message.offset))))
        deferred = sum(r.deferred for r in records)
        if deferred:
            metrics.EVENTS_DEFERRED.inc(deferred)
        return Folded(records, dead)

    async def recommend(self, folded: Folded) -> BatchResult:
        """The stages that only read the state, so they may run while the next batch is being
        folded: they change no session, item or user (a miss fills the worker's memory from Feast,
        as any read does) and no count; metrics and the catalogue-mismatch warning aside. What a
        published batch changes is :meth:`learn`'s."""
        if not folded.events:
            return BatchResult(dead_letters=folded.dead)
        events, sessions = [r.event for r in folded.events], [r.session for r in folded.events]
        with timed("rank"):
            rankings, version, fallback = await self.rank(sessions)
        if self.settings.diversity > 0:
            rankings = [None if r is None else list(r) for r in rankings]  # read twice: categories, then select
            with timed("read_categories"):
                categories = await self.read_categories(sessions, [r or [] for r in rankings])
            with timed("select"):
                picks = self.select(rankings, events, sessions, categories)
        else:
            with timed("select"):
                picks = self.select(rankings, events, sessions)
            with timed("read_categories"):
                categories = await self.read_categories(sessions, picks)
        with timed("explain"):
            recs = [self.explain(r.event, r.published_user_id, r.session, p, categories, version,
                                 fallback or ("features_unavailable" if r.deferred else None))
                    for r, p in zip(folded.events, picks)]
        metrics.LAST_EVENT_TIMESTAMP.set(time.time())
        return BatchResult(recommendations=recs, dead_letters=folded.dead, event_ts=[e.ts for e in events])

    def validate(self, messages: list[RawMessage]) -> tuple[list[tuple[Event, RawMessage]], list[DeadLetter]]:
        """Valid events with their message, and a dead letter for each other message."""
        valid, dead = [], []
        for msg in messages:
            try:
                event = parse_event(msg.value, self.settings.max_event_bytes)
            except InvalidEvent as exc:
                metrics.EVENTS_INVALID.labels(exc.reason).inc()
                dead.append(dead_letter(msg.value, exc, msg.topic, msg.partition, msg.offset))
                continue
            metrics.EVENTS_CONSUMED.labels(event.event_type).inc()
            valid.append((event, msg))
        return valid, dead

    def pseudonymize(self, event: Event) -> Event:
        key = self.pseudonym_key
        update = {"user_id": pseudonym(key, event.user_id) if event.user_id is not None else None}
        if self.settings.pseudonymize_sessions:
            update["session_id"] = pseudonym(key, event.session_id)
        return event.model_copy(update=update)

    def fold_events(self, state: OnlineState, events: list[Event]) -> tuple[list[SessionState], list[bool]]:
        """Each event's session right after it (what the model sees for it) and whether the event
        was new; counts into popularity."""
        sessions, fresh = apply_events(state, events, self.settings.max_session_len)
        self.state.sessions.put(state.sessions)
        self.state.items.keep(state.items)  # the local view only: the items' owners write the counters
        for event in events:
            self.popularity.observe(event.item_id, state.items[event.item_id].interaction_count, event.ts)
        return sessions, fresh

    def learn(self, folded: Folded, result: BatchResult) -> None:
        """What a published batch changes, run once it is published and every earlier batch has
        learned: each recommended slot counts in the exposure (stream/live_exposure.py); online
        attribution matches each new event against what its session was recommended before, then
        remembers its own recommendation. Synchronous, so no fold interleaves: the sessions in
        memory may already hold later events, and keep them."""
        self.exposure.observe(item.item_id for rec in result.recommendations for item in rec.items)
        window_ms, keep = self.settings.attribution_window_s * 1000, self.settings.attribution_messages
        learned: dict[str, SessionState] = {}
        for record, rec in zip(folded.events, result.recommendations):
            event, fresh = record.event, record.fresh
            session = learned.get(event.session_id) or self.state.sessions.values.get(event.session_id)
            if not fresh or session is None:  # a redelivery, or a session erased meanwhile
                continue
            hit = attribute(session.recommended, event, window_ms)
            if hit is not None:
                metrics.ATTRIBUTED_EVENTS.labels(hit.event_type, hit.model_version, rank_bucket(hit.rank)).inc()
                metrics.ATTRIBUTED_RECIPROCAL_RANK.labels(hit.event_type, hit.model_version).inc(1 / hit.rank)
            metrics.RECOMMENDATIONS_BY_VERSION.labels(rec.model_version).inc()
            shown = Shown(event.ts, rec.model_version, tuple(item.item_id for item in rec.items))
            learned[event.session_id] = remember(session, shown, keep, hit is not None)
        self.state.sessions.put(learned)

    async def rank(self, sessions: list[SessionState]
                   ) -> tuple[list[Iterable[Candidate] | None], str, FallbackReason | None]:
        """The model's candidates per session (those of the live catalogue) and its version, or none
        and a fallback reason when Triton fails."""
        try:
            rankings, version, catalogue = await self.ranker.rank([(s.item_ids, s.event_types) for s in sessions])
        except TRITON_ERRORS as exc:
            log.warning("Triton call failed, serving popular items: %r", exc)
            metrics.TRITON_UP.set(0)
            return [None] * len(sessions), "fallback", "triton_unavailable"
        metrics.TRITON_UP.set(1)
        metrics.MODEL_INFO.info({"version": version})
        allowed = self.catalogue.allowed(catalogue)
        if allowed is not None:
            return [live_only(r, allowed) for r in rankings], version, None
        return list(rankings), version, None

    def select(self, rankings: list[Iterable[Candidate] | None], events: list[Event],
               sessions: list[SessionState], categories: dict[str, str | None] | None = None
               ) -> list[list[Candidate]]:
        """Never the item on screen (the event's own item) nor one already bought; with
        RECO_EXCLUDE_SESSION_ITEMS, nothing the session has touched. With RECO_DIVERSITY > 0 the
        model's candidates are re-ranked by category (``categories``: every candidate's)."""
        fill = self.popularity.top(self.settings.k * 2 + self.settings.max_session_len)
        return [select_items(r, self.excluded(e, s), self.settings.k, fill, self.settings.diversity, categories)
                for r, e, s in zip(rankings, events, sessions)]

    def excluded(self, event: Event, session: SessionState) -> set[str]:
        touched = set(session.item_ids) if self.settings.exclude_session_items else set()
        return touched | set(session.purchased_items) | {event.item_id}

    async def read_categories(self, sessions: list[SessionState],
                              picks: Sequence[Iterable[Candidate]]) -> dict[str, str | None]:
        """Categories of every item a token may mention (from memory, Feast on a miss): the sessions'
        items and ``picks`` (with RECO_DIVERSITY > 0, every candidate: the re-rank needs them too)."""
        wanted = unique([i for s in sessions for i in s.item_ids] + [p.item_id for ps in picks for p in ps])
        items = (await self.state.load_available(item_ids=wanted))[0].items  # store down: those held
        return {item: stats.category_id for item, stats in items.items()}

    def explain(self, event: Event, user_id: str | None, session: SessionState, picks: list[Candidate],
                categories: dict[str, str | None], version: str, fallback: FallbackReason | None) -> Recommendation:
        items = []
        in_session = session_categories(session, categories)
        for pick in picks:
            if pick.from_model:
                tokens = explain_model_item(pick, session, categories, in_session, self.popularity)
            else:
                tokens = explain_fill_item(pick.item_id, self.popularity, fallback)
            # model_construct: these values are the worker's own, already valid; validation costs.
            items.append(RecommendedItem.model_construct(item_id=pick.item_id, score=round(pick.score, 6),
                                                         explanation=tokens))
        reason: FallbackReason | None = fallback or (None if len(items) == self.settings.k else "too_few_candidates")
        if reason:
            metrics.FALLBACKS.labels(reason).inc()
        return Recommendation.model_construct(event_id=event.event_id, session_id=event.session_id,
                                              user_id=user_id, items=items, model_version=version,
                                              generated_at=int(time.time() * 1000), fallback=reason)
