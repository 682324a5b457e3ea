"""Ranking post-processing: the model's candidates become the k items a shopper sees."""
from __future__ import annotations

from dataclasses import dataclass

from serving.client import ModelRanking


@dataclass(frozen=True)
class Pick:
    item_id: str
    score: float
    attr_index: int  # -1 for items not from the model
    attr_drop: float
    from_model: bool


def select_items(ranking: ModelRanking | None, purchased: set[str], k: int, fill: list[str]) -> list[Pick]:
    """Top-k distinct candidates not already purchased, topped up from ``fill`` (most popular first)
    when the model gives too few; fill items carry score 0."""
    picks: list[Pick] = []
    seen = set(purchased)
    if ranking is not None:
        for item, score, index, drop in zip(ranking.items, ranking.scores, ranking.attr_index, ranking.attr_drop):
            if len(picks) == k:
                break
            if item not in seen:
                seen.add(item)
                picks.append(Pick(item, score, index, drop, from_model=True))
    for item in fill:
        if len(picks) == k:
            break
        if item not in seen:
            seen.add(item)
            picks.append(Pick(item, 0.0, -1, 0.0, from_model=False))
    return picks
