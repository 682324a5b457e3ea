"""Ranking metrics as small pure functions.

A *rank* is 0-based: rank 0 means the target was ranked first. For one user:

    HR@k   = 1 if rank < k else 0
    NDCG@k = 1 / log2(rank + 2) if rank < k else 0     (one relevant item, so IDCG = 1)
    MRR@k  = 1 / (rank + 1) if rank < k else 0

and each metric is averaged over users. A missing target (e.g. an item unknown to the model)
has rank = +inf and scores 0 everywhere.
"""
from __future__ import annotations

import numpy as np
import torch

KS = (5, 10, 20)


def hit_rate(ranks, k: int) -> float:
    r = np.asarray(ranks, dtype=np.float64)
    return float(np.mean(r < k)) if r.size else 0.0


def _mean_gain(ranks, k: int, gain) -> float:
    """Mean over users of gain(rank) for ranks below k, 0 otherwise (rank 0 = first)."""
    r = np.asarray(ranks, dtype=np.float64)
    if not r.size:
        return 0.0
    hit = r < k
    gains = np.zeros_like(r)
    gains[hit] = gain(r[hit])
    return float(gains.mean())


def ndcg(ranks, k: int) -> float:
    return _mean_gain(ranks, k, lambda r: 1.0 / np.log2(r + 2.0))


def mrr(ranks, k: int) -> float:
    return _mean_gain(ranks, k, lambda r: 1.0 / (r + 1.0))


def coverage(top_lists, n_items: int) -> float:
    """Fraction of the catalogue (items 1..n_items) appearing in at least one list."""
    seen: set[int] = set()
    for row in top_lists:
        seen.update(int(i) for i in row)
    seen.discard(0)
    return len(seen) / n_items if n_items else 0.0


def summarize(ranks, top10=None, n_items: int | None = None) -> dict:
    """The metric set every report uses: hr/ndcg @5/10/20, mrr@10 and @20, coverage@10, users."""
    out = {}
    for k in KS:
        out[f"hr@{k}"] = hit_rate(ranks, k)
    for k in KS:
        out[f"ndcg@{k}"] = ndcg(ranks, k)
    out["mrr@10"] = mrr(ranks, 10)  # the served lists' length (RECO_K): what the live replay measures
    out["mrr@20"] = mrr(ranks, 20)
    if top10 is not None and n_items:
        out["coverage@10"] = coverage(top10, n_items)
    out["users"] = int(np.asarray(ranks).size)
    return out


def target_ranks(scores: torch.Tensor, target_scores: torch.Tensor, generator: torch.Generator | None = None,
                 exclude_target: torch.Tensor | None = None) -> torch.Tensor:
    """0-based rank of each row's target among the row's candidate scores.

    scores [B, C]: candidate scores (may include the target itself; pass its column in
    ``exclude_target`` [B] so it is not counted as its own tie). target_scores [B].
    rank = #(candidates scoring strictly higher) + a uniformly random share of the ties
    (seeded by ``generator``), so a constant scorer gets the chance-level expected metric
    rather than a perfect one.
    """
    scores = torch.as_tensor(scores)
    t = torch.as_tensor(target_scores, dtype=scores.dtype).view(-1, 1)
    higher = (scores > t).sum(1)
    ties = (scores == t).sum(1)
    if exclude_target is not None:
        ties = ties - 1
    ties = ties.clamp(min=0)
    u = torch.rand(scores.shape[0], generator=generator)
    return higher + torch.floor(u * (ties + 1).to(u.dtype)).long().clamp(max=ties)
