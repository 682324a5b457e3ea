"""Online feedback, pure: did a later event of a session touch an item recommended to it?

An event is *attributed* when its item was in one of the session's last few recommendation
messages (Settings.attribution_messages) shown at most Settings.attribution_window_s before it, in
event time. The most recent such message decides the model version and the rank, so hit rates per
version and per rank bucket are one PromQL ratio (``reco_attributed_events_total`` over
``reco_recommendations_total``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from contract.messages import Event
from features.state import SessionState, Shown

# Upper rank of each bucket label, best first; ranks past the last bucket (k > 10) share "11+".
RANK_BUCKETS = ((1, "1"), (5, "2-5"), (10, "6-10"))


@dataclass(frozen=True)
class Hit:
    event_type: str
    model_version: str
    rank: int  # 1 = first slot


def rank_bucket(rank: int) -> str:
    return next((label for upper, label in RANK_BUCKETS if rank <= upper), "11+")


def attribute(recommended: Sequence[Shown], event: Event, window_ms: int) -> Hit | None:
    """The recommendation ``event`` acted on, if any: the most recent message in the window that
    held its item. Messages after the event (out-of-order events) do not count."""
    for shown in reversed(recommended):
        if 0 <= event.ts - shown.ts <= window_ms and event.item_id in shown.items:
            return Hit(event.event_type, shown.model_version, shown.items.index(event.item_id) + 1)
    return None


def remember(session: SessionState, shown: Shown, keep: int, attributed: bool) -> SessionState:
    """The session after ``shown`` was published: the last ``keep`` messages, and the count of its
    attributed events."""
    return replace(session, recommended=(session.recommended + (shown,))[-keep:],
                   attributed_count=session.attributed_count + attributed)
