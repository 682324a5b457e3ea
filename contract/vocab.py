"""Every closed vocabulary of the product, once: a ``Literal`` for type checkers and pydantic, and a
tuple derived from it for code that iterates (metrics labels, model embeddings, tables)."""
from __future__ import annotations

from typing import Literal, get_args

EventType = Literal["view", "click", "add_to_cart", "purchase"]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)

# Why a message went to the DLQ instead of producing a recommendation.
DlqReason = Literal["too_large", "not_json", "too_deep", "invalid_schema", "unknown_event_type"]
DLQ_REASONS: tuple[DlqReason, ...] = get_args(DlqReason)

# Why a recommendation was not (entirely) the model's ranking.
# features_unavailable: the online store was down and the worker did not hold the session, so the
# recommendation comes from the event alone; the event is folded into its session once the store is
# back.
FallbackReason = Literal["triton_unavailable", "too_few_candidates", "features_unavailable"]
FALLBACK_REASONS: tuple[FallbackReason, ...] = get_args(FallbackReason)
