"""Feature math: how one event changes the online state of its session, item and user.

The records are frozen and each ``apply_*`` function returns a new one, changing nothing it is
given; :func:`apply_events` alone folds a batch into the ``OnlineState`` slice it is given, in place
(that slice is the batch's own: the caller keeps what changed)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from contract.messages import Event, Tally

# Enough event ids to recognise a redelivery after a worker restart mid-batch.
RECENT_EVENT_IDS = 64
MAX_PURCHASED = 200
# A user's most recent sessions, so an erasure by user finds them (older ones expire by TTL first).
MAX_USER_SESSIONS = 100


@dataclass(frozen=True)
class Shown:
    """One recommendation message as the session saw it: what online attribution matches later
    events against (features/feedback.py)."""

    ts: int  # the triggering event's time (epoch ms): attribution windows run on event time
    model_version: str
    items: tuple[str, ...]  # best first

    def encode(self) -> str:
        """One entry of the Feast string list (Feast has no list of records)."""
        return json.dumps([self.ts, self.model_version, list(self.items)], separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> Shown:
        ts, version, items = json.loads(text)
        return cls(int(ts), str(version), tuple(items))


@dataclass(frozen=True)
class SessionState:
    item_ids: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    purchased_items: tuple[str, ...] = ()
    recent_event_ids: tuple[str, ...] = ()
    event_count: int = 0
    last_ts: int = 0
    recommended: tuple[Shown, ...] = ()  # the last few recommendation messages, oldest first
    attributed_count: int = 0  # later events of this session on an item recommended to it


@dataclass(frozen=True)
class ItemStats:
    interaction_count: int = 0
    purchase_count: int = 0
    category_id: str | None = None
    # Per partition of `events`, the offset of the last event counted (-1: none): makes the
    # counters idempotent, so a forwarded event counted once is skipped when forwarded again.
    applied_offsets: tuple[int, ...] = ()


@dataclass(frozen=True)
class UserStats:
    event_count: int = 0
    session_count: int = 0
    session_ids: tuple[str, ...] = ()  # most recent last, at most MAX_USER_SESSIONS
    applied_offsets: tuple[int, ...] = ()  # as ItemStats.applied_offsets


@dataclass
class OnlineState:
    """The slice of online state one batch touches, keyed by entity id."""

    sessions: dict[str, SessionState] = field(default_factory=dict)
    items: dict[str, ItemStats] = field(default_factory=dict)
    users: dict[str, UserStats] = field(default_factory=dict)


def apply_session(state: SessionState, event: Event, max_len: int) -> SessionState:
    purchased = state.purchased_items
    if event.event_type == "purchase" and event.item_id not in purchased:
        purchased = (purchased + (event.item_id,))[-MAX_PURCHASED:]
    return replace(
        state,
        item_ids=(state.item_ids + (event.item_id,))[-max_len:],
        event_types=(state.event_types + (event.event_type,))[-max_len:],
        purchased_items=purchased,
        recent_event_ids=(state.recent_event_ids + (event.event_id,))[-RECENT_EVENT_IDS:],
        event_count=state.event_count + 1,
        last_ts=max(state.last_ts, event.ts),
    )


def apply_item(stats: ItemStats, event: Event | Tally) -> ItemStats:
    return replace(stats, interaction_count=stats.interaction_count + 1,
                   purchase_count=stats.purchase_count + (event.event_type == "purchase"),
                   category_id=event.category_id or stats.category_id)


def apply_user(stats: UserStats, session_id: str, session_is_new: bool) -> UserStats:
    if not session_is_new:
        return replace(stats, event_count=stats.event_count + 1)
    return replace(stats, event_count=stats.event_count + 1, session_count=stats.session_count + 1,
                   session_ids=(stats.session_ids + (session_id,))[-MAX_USER_SESSIONS:])


def record_offset(applied: tuple[int, ...], partition: int, offset: int) -> tuple[int, ...] | None:
    """``applied`` with ``offset`` as the partition's last counted event, or None when that event
    (or a later one of the same partition, which Kafka delivers after it) was counted already."""
    if partition < len(applied) and applied[partition] >= offset:
        return None
    padded = applied + (-1,) * (partition + 1 - len(applied))
    return padded[:partition] + (offset,) + padded[partition + 1:]


def apply_item_tally(stats: ItemStats, tally: Tally) -> ItemStats | None:
    """The item's counters with this event counted, or None if it was counted already."""
    applied = record_offset(stats.applied_offsets, tally.source_partition, tally.source_offset)
    if applied is None:
        return None
    return replace(apply_item(stats, tally), applied_offsets=applied)


def apply_user_tally(stats: UserStats, tally: Tally) -> UserStats | None:
    """The user's counters with this event counted, or None if it was counted already."""
    applied = record_offset(stats.applied_offsets, tally.source_partition, tally.source_offset)
    if applied is None:
        return None
    return replace(apply_user(stats, tally.session_id, tally.session_is_new), applied_offsets=applied)


def is_first_event(session: SessionState, event: Event) -> bool:
    """Whether ``event`` opened ``session`` (a state that holds it): exact while the session has
    at most RECENT_EVENT_IDS events, so also for a redelivered event."""
    return (session.event_count == len(session.recent_event_ids) and bool(session.recent_event_ids)
            and session.recent_event_ids[0] == event.event_id)


def apply_events(state: OnlineState, events: list[Event], max_len: int) -> tuple[list[SessionState], list[bool]]:
    """Fold events (in partition order) into the sessions of ``state`` in place, and into the
    worker's local view of their items (popularity, categories; the exact item and user counters
    come from tallies); return each event's session state right after it, which is what the
    model sees for that event, and whether the event was new.

    An event whose id the session has already seen is a redelivery: it changes nothing, and
    the snapshot is the current state, so its recommendation can be re-published.
    """
    snapshots, fresh = [], []
    for event in events:
        session = state.sessions.get(event.session_id, SessionState())
        fresh.append(event.event_id not in session.recent_event_ids)
        if fresh[-1]:
            state.items[event.item_id] = apply_item(state.items.get(event.item_id, ItemStats()), event)
            session = apply_session(session, event, max_len)
            state.sessions[event.session_id] = session
        snapshots.append(session)
    return snapshots, fresh
