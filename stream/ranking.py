"""Ranking post-processing: the model's candidates become the k items a shopper sees."""
from __future__ import annotations

from typing import Iterable

from contract.ranking import Candidate


def select_items(ranking: Iterable[Candidate] | None, excluded: set[str], k: int, fill: list[str]) -> list[Candidate]:
    """Top-k distinct candidates not in ``excluded`` (e.g. purchased), topped up from ``fill`` (most
    popular first) when the model gives too few; fill items carry score 0 and no attribution."""
    picks: list[Candidate] = []
    seen = set(excluded)
    for candidate in ranking or []:
        if len(picks) == k:
            break
        if candidate.item_id not in seen:
            seen.add(candidate.item_id)
            picks.append(candidate)
    for item in fill:
        if len(picks) == k:
            break
        if item not in seen:
            seen.add(item)
            picks.append(Candidate(item, 0.0, -1, 0.0, from_model=False))
    return picks
