"""Inference with attribution: top-k items for a batch of sessions and, for each item, the session
interaction whose removal lowers its score most (leave-one-out occlusion, faithful by construction).

Sequences are LEFT-padded with 0 (most recent interaction last), as the model expects.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Variant sequences scored per forward pass: bounds memory at chunk x catalogue logits.
OCCLUSION_CHUNK = 128


@dataclass
class RankedBatch:
    """Top candidates of each row of a batch. ``attr_pos`` is a column index into the ``items``
    tensor given to ``rank_with_attribution`` (padding columns included), -1 if none."""

    items: torch.Tensor  # [B, C] item indices, best first
    scores: torch.Tensor  # [B, C] logits
    attr_pos: torch.Tensor  # [B, C] column of the most supporting interaction, -1 if none
    attr_drop: torch.Tensor  # [B, C] score drop when that interaction is removed


def remove_positions(seqs: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """For each (row, position) pair, ``seqs[row]`` with that position deleted and the earlier
    interactions shifted right, so the row stays left-padded and aligned at its end."""
    length = seqs.shape[1]
    k = torch.arange(length, device=seqs.device).unsqueeze(0)  # [1, L]
    source = k - (k <= positions.unsqueeze(1)).long()  # earlier entries come from one to the left
    shifted = seqs[rows].gather(1, source.clamp(min=0))
    return shifted.masked_fill(source < 0, 0)


def score_candidates(model, items, types, candidates: torch.Tensor) -> torch.Tensor:
    """Scores [V, C] of the given candidate items. Rows are scored in chunks of similar length,
    each trimmed to its longest row, so one long session does not widen every other row."""
    lengths = (items != 0).sum(1)
    out = torch.empty(candidates.shape, dtype=torch.float32, device=items.device)
    order = lengths.argsort()
    for start in range(0, items.shape[0], OCCLUSION_CHUNK):
        rows = order[start:start + OCCLUSION_CHUNK]
        width = max(1, int(lengths[rows].max()))
        logits = model.score_last(items[rows, -width:], types[rows, -width:])
        out[rows] = logits.gather(1, candidates[rows]).float()
    return out


@torch.no_grad()
def rank_with_attribution(model, items: torch.Tensor, types: torch.Tensor, n_candidates: int,
                          attribute: bool = True, window: int = 0) -> RankedBatch:
    """``window``: attribute over the most recent ``window`` interactions only (0 = all); the
    cost grows with the number of interactions tried, and recent ones drive session models."""
    # Drop the padding columns no row uses: positions count from each row's first interaction,
    # so scores are unchanged and the (quadratic) attention runs on the real length only.
    used = (items != 0).any(0).nonzero()
    offset = int(used[0]) if used.numel() else items.shape[1] - 1
    items, types = items[:, offset:], types[:, offset:]
    ranked = _rank(model, items, types, n_candidates, attribute, window)
    ranked.attr_pos = torch.where(ranked.attr_pos >= 0, ranked.attr_pos + offset, ranked.attr_pos)
    return ranked


def _rank(model, items: torch.Tensor, types: torch.Tensor, n_candidates: int, attribute: bool, window: int) -> RankedBatch:
    logits = model.score_last(items, types).float()
    logits[:, 0] = float("-inf")  # padding index is never an item
    n_candidates = min(n_candidates, logits.shape[1] - 1)
    scores, top = logits.topk(n_candidates, dim=1)
    batch = items.shape[0]
    attr_pos = torch.full_like(top, -1)
    attr_drop = torch.zeros_like(scores)
    if not attribute:
        return RankedBatch(top, scores, attr_pos, attr_drop)

    first = items.shape[1] - window if 0 < window < items.shape[1] else 0
    rows, positions = (items[:, first:] != 0).nonzero(as_tuple=True)  # one variant per interaction tried
    positions = positions + first
    if rows.numel() == 0:
        return RankedBatch(top, scores, attr_pos, attr_drop)
    variant_scores = score_candidates(
        model, remove_positions(items, rows, positions), remove_positions(types, rows, positions), top[rows]
    ).float()
    drops = scores[rows] - variant_scores  # [V, C]

    # Per row, the variant with the largest drop for each candidate: scatter-max over rows.
    best = torch.full((batch, n_candidates), float("-inf"), device=drops.device)
    best = best.scatter_reduce(0, rows.unsqueeze(1).expand_as(drops), drops, reduce="amax")
    is_best = drops == best[rows]
    # Ties: keep the most recent position (largest index) that reaches the maximum.
    pos_if_best = torch.where(is_best, positions.unsqueeze(1).expand_as(drops), torch.full_like(drops, -1, dtype=torch.long))
    attr_pos = attr_pos.scatter_reduce(0, rows.unsqueeze(1).expand_as(drops), pos_if_best, reduce="amax")
    has_rows = torch.isfinite(best)
    attr_drop = torch.where(has_rows, best, attr_drop)
    return RankedBatch(top, scores, attr_pos, attr_drop)
