"""Explanation tokens: pure functions from what drove a recommendation to the documented vocabulary.

Vocabulary: ``<event_type>:<item_id>`` (the session interaction whose removal lowers the item's
score most), ``category:<id>`` (shares a category with the session), ``popular`` / ``trending``,
``cold_start`` (session too short to personalise), ``fallback:<reason>``.
"""
from __future__ import annotations

from contract.ranking import Candidate
from features.state import SessionState
from stream.popularity import Popularity

MIN_PERSONALISED_LENGTH = 2


def popularity_tokens(item_id: str, popularity: Popularity) -> list[str]:
    if popularity.is_trending(item_id):
        return ["trending"]
    if popularity.is_popular(item_id):
        return ["popular"]
    return []


def session_categories(session: SessionState, categories: dict[str, str | None]) -> set[str | None]:
    return {categories.get(i) for i in session.item_ids}


def explain_model_item(candidate: Candidate, session: SessionState, categories: dict[str, str | None],
                       in_session: set[str | None], popularity: Popularity) -> list[str]:
    """``in_session``: the session's categories (session_categories), computed once per event."""
    item_id, index = candidate.item_id, candidate.attr_index
    tokens = []
    # An item is never explained by itself (an earlier view of the same item, say).
    if 0 <= index < len(session.item_ids) and candidate.attr_drop > 0 and session.item_ids[index] != item_id:
        tokens.append(f"{session.event_types[index]}:{session.item_ids[index]}")
    category = categories.get(item_id)
    if category is not None and category in in_session:
        tokens.append(f"category:{category}")
    tokens += popularity_tokens(item_id, popularity)
    if len(session.item_ids) < MIN_PERSONALISED_LENGTH:
        tokens.append("cold_start")
    # No interaction raised the score: the model's learned prior, i.e. popularity, carried it.
    return tokens or ["popular"]


def explain_fill_item(item_id: str, popularity: Popularity, fallback_reason: str | None) -> list[str]:
    tokens = [f"fallback:{fallback_reason}"] if fallback_reason else []
    return tokens + (popularity_tokens(item_id, popularity) or ["popular"])
