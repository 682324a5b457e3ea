"""Category diversity re-ranking: maximal marginal relevance (MMR) with one knob, ``lam`` (λ).

Given candidates (best first, with scores and categories), the list is built greedily. At each
step the next item is the remaining candidate with the highest

    (1 - λ) · rel(c)  -  λ · [category(c) is already in the list]

where ``rel`` is the candidate's score min-max normalised over the candidate pool (1 for every
candidate when all scores are equal). Ties go to the candidate that came first. An unknown
category (``None`` here, 0 in the batched form) is never penalised: it counts as its own category.

* λ = 0 is the plain top-k: the candidates in the order given (the function returns them unchanged,
  without computing anything).
* λ = 1 takes one item of each new category in score order, then the rest in score order.
* In between, a repeat of a category already shown must lead a new category's best item by more
  than λ / (1 - λ) of the pool's score range to come first.

Both the worker (stream/selection.py, per event, plain Python) and the offline evaluator
(serving/offline/evaluate.py, a whole batch at once in numpy) use this module, so the two
agree; tests/serving/model/test_rerank.py checks that the two forms give the same orders.
"""
from __future__ import annotations

import math
from typing import Hashable, Sequence

import numpy as np


def mmr_order(scores: Sequence[float], categories: Sequence[Hashable | None], lam: float,
              k: int | None = None) -> list[int]:
    """Indices of the first ``k`` (default all) candidates in MMR order.

    ``scores`` and ``categories`` are aligned; the candidates should be given best first (then
    λ = 0 returns ``[0, 1, ..., k-1]``). Scores of ``-inf`` (or NaN) are kept last, in the order given.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"diversity λ must be within [0, 1], got {lam}")
    n = len(scores)
    if len(categories) != n:
        raise ValueError("scores and categories must be aligned")
    k = n if k is None else max(0, min(int(k), n))
    if lam == 0.0 or n == 0:
        return list(range(k))
    valid = [i for i in range(n) if math.isfinite(scores[i])]
    invalid = [i for i in range(n) if not math.isfinite(scores[i])]
    if valid:
        lo = min(scores[i] for i in valid)
        hi = max(scores[i] for i in valid)
        span = hi - lo
        rel = {i: ((scores[i] - lo) / span if span > 0 else 1.0) for i in valid}
    order: list[int] = []
    shown: set[Hashable] = set()
    remaining = valid
    while remaining and len(order) < k:
        best, best_value = -1, -math.inf
        for i in remaining:
            value = (1.0 - lam) * rel[i] - (lam if categories[i] is not None and categories[i] in shown else 0.0)
            if value > best_value:  # strict: ties keep the earlier candidate
                best, best_value = i, value
        order.append(best)
        remaining = [i for i in remaining if i != best]
        if categories[best] is not None:
            shown.add(categories[best])
    return (order + invalid)[:k]


def mmr_order_batch(scores: np.ndarray, categories: np.ndarray, lam: float, k: int | None = None) -> np.ndarray:
    """:func:`mmr_order` for a batch: ``scores`` [B, P] float, ``categories`` [B, P] int (0 = unknown)
    -> [B, k] column indices. Same rule, same tie-breaking (the first column wins)."""
    scores = np.asarray(scores, dtype=np.float64)
    categories = np.asarray(categories, dtype=np.int64)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"diversity λ must be within [0, 1], got {lam}")
    if scores.shape != categories.shape or scores.ndim != 2:
        raise ValueError("scores and categories must both be [B, P]")
    B, P = scores.shape
    k = P if k is None else max(0, min(int(k), P))
    if lam == 0.0 or P == 0 or B == 0:
        return np.broadcast_to(np.arange(k), (B, k)).copy()
    valid = np.isfinite(scores)
    lo = np.where(valid, scores, np.inf).min(1, keepdims=True)
    hi = np.where(valid, scores, -np.inf).max(1, keepdims=True)
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(span > 0, (scores - lo) / np.where(span > 0, span, 1.0), 1.0)
    rel = np.where(valid, rel, 0.0)
    # Invalid candidates come last, in column order: their value is below any valid one's (>= -1).
    tail = -3.0 - np.arange(P) / (P + 1.0)
    taken = np.zeros((B, P), dtype=bool)
    rows = np.arange(B)
    order = np.zeros((B, k), dtype=np.int64)
    # shown[b, c] for each candidate: is its category already in row b's list
    in_list = np.zeros((B, P), dtype=bool)
    known = categories != 0
    for step in range(k):
        value = (1.0 - lam) * rel - lam * in_list
        value = np.where(valid, value, tail)
        value = np.where(taken, -np.inf, value)
        pick = value.argmax(1)  # the first maximum: ties keep the earlier column
        order[:, step] = pick
        taken[rows, pick] = True
        picked_cat = categories[rows, pick]
        newly = known & (categories == picked_cat[:, None]) & valid[rows, pick][:, None]
        in_list |= newly
    return order
