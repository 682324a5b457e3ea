"""The ranking result that crosses from the model client to the worker's post-processing."""
from __future__ import annotations

from typing import NamedTuple


class Candidate(NamedTuple):
    """One ranked item. ``attr_index`` indexes the session's interactions as the worker holds them
    (oldest first): the interaction whose removal lowers this item's score most, -1 if none does.
    A tuple, not a dataclass: the worker builds fifty per event."""

    item_id: str
    score: float
    attr_index: int
    attr_drop: float
    from_model: bool = True  # False for items topped up from popularity
