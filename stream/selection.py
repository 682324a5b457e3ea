"""Ranking post-processing: the model's candidates become the k items a shopper sees."""
from __future__ import annotations

from typing import Container, Iterable, Iterator, Mapping

from contract.ranking import Candidate
from serving.model.rerank import mmr_order
from stream import metrics


def select_items(ranking: Iterable[Candidate] | None, excluded: set[str], k: int, fill: list[str],
                 diversity: float = 0.0, categories: Mapping[str, str | None] | None = None) -> list[Candidate]:
    """Top-k distinct candidates not in ``excluded`` (e.g. purchased), topped up from ``fill`` (most
    popular first) when the model gives too few; fill items carry score 0 and no attribution.

    With ``diversity`` (λ > 0) the k are chosen from every allowed candidate by the MMR category
    re-rank (serving/model/rerank.py) on ``categories`` (item -> category; missing or None: unknown,
    never penalised); at 0 the candidates are taken in the model's order, as without it."""
    picks: list[Candidate] = []
    seen = set(excluded)
    if diversity > 0:
        pool: list[Candidate] = []
        for candidate in ranking or []:
            if candidate.item_id not in seen:
                seen.add(candidate.item_id)
                pool.append(candidate)
        cats = categories or {}
        order = mmr_order([c.score for c in pool], [cats.get(c.item_id) for c in pool], diversity, k)
        picks = [pool[i] for i in order]
    else:
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


def live_only(ranking: Iterable[Candidate], allowed: Container[str]) -> Iterator[Candidate]:
    """The candidates in ``allowed`` (the live catalogue, stream/catalogue.py), lazily, counting
    those left out."""
    for candidate in ranking:
        if candidate.item_id in allowed:
            yield candidate
        else:
            metrics.CANDIDATES_OFF_CATALOGUE.inc()
