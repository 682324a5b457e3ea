"""Sessions as both sides of the model hold them, and how ids are ordered.

The in-memory types every loader (serving.offline.data), the vocabulary (serving.model.artifacts),
retraining and the replay tool share: a ``Session`` is one shopper's interactions in chronological
order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from contract.vocab import EventType


@dataclass(frozen=True)
class Interaction:
    item_id: str
    event_type: EventType
    ts: int  # epoch milliseconds
    category_id: str | None = None
    price: float | None = None


@dataclass
class Session:
    session_id: str
    user_id: str | None
    interactions: list[Interaction] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.interactions)

    @property
    def items(self) -> list[str]:
        return [x.item_id for x in self.interactions]


def id_sort_key(item_id: str) -> tuple[int, int, str]:
    """Numeric ids sort numerically, others lexically (numbers first), as SASRec numbers items."""
    return (0, int(item_id), "") if item_id.isdigit() else (1, 0, item_id)
