"""Inference with attribution: top-k items for a batch of sessions and, for each item, the session
interaction whose removal lowers its score most (leave-one-out occlusion, faithful by construction).

Sequences are LEFT-padded with 0 (most recent interaction last), as the model expects.

Two ways to score the occluded variants, equal to float tolerance:

* ``"brute"``: one full forward pass (``model.score_last``) per variant. Works for any model with
  ``score_last``.
* ``"prefix"`` (default): exact and much cheaper for ``SessionTransformer``. The model is causal and
  positions count from each row's first interaction, so deleting position p leaves every earlier
  position's hidden states (per layer) unchanged. One pass over the batch caches each layer's
  keys/values and the final hidden states; each variant then recomputes only the positions after
  p (their positions one lower), layer by layer, attending to the cached prefix; the last layer
  only needs the last position unless the copy head needs every final state. Deleting the most
  recent interaction needs no recomputation at all (the variant's answer is the cached state one
  step earlier). The ranking itself comes from the same pass (padding positions are skipped), and
  the copy head's pointer reuses the cached copy keys of the prefix. All variants of a batch run
  together: recomputed positions as one flat list through the linear layers, and one attention
  call per layer over (cached keys, each variant's own recomputed keys). Other models, training
  mode and rows longer than ``max_len`` (where a deletion lets an older interaction into the
  model's window) use ``"brute"``. docs/benchmarks.md has the speed of both
  (serving.offline.bench_compute).

Deleting any one of a run of identical neighbours (same item and event type) leaves the same
session; both methods give the run one score, so the tie is exact and goes to the most recent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from serving.model.transformer import SessionTransformer

# Variant sequences scored per forward pass: bounds memory at chunk x catalogue logits.
OCCLUSION_CHUNK = 128
# "prefix": elements of the per-chunk attention scores (rows x heads x queries x keys).
PREFIX_CHUNK_ELEMENTS = 1 << 21
# "prefix": deleted columns handled together (their recomputed suffixes attend to each other's slots).
PREFIX_BLOCK = 10
# "prefix": elements of one block of catalogue logits.
LOGIT_CHUNK_ELEMENTS = 1 << 22

METHODS = ("prefix", "brute")


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
                          attribute: bool = True, window: int = 0, method: str = "prefix") -> RankedBatch:
    """``window``: attribute over the most recent ``window`` interactions only (0 = all); the
    cost grows with the number of interactions tried, and recent ones drive session models.
    ``method``: how occluded variants are scored, ``"prefix"`` or ``"brute"`` (module docstring)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    # Drop the padding columns no row uses: positions count from each row's first interaction,
    # so scores are unchanged and the (quadratic) attention runs on the real length only.
    used = (items != 0).any(0).nonzero()
    offset = int(used[0]) if used.numel() else items.shape[1] - 1
    items, types = items[:, offset:], types[:, offset:]
    ranked = _rank(model, items, types, n_candidates, attribute, window, method)
    ranked.attr_pos = torch.where(ranked.attr_pos >= 0, ranked.attr_pos + offset, ranked.attr_pos)
    return ranked


def _rank(model, items: torch.Tensor, types: torch.Tensor, n_candidates: int, attribute: bool, window: int,
          method: str = "prefix") -> RankedBatch:
    use_prefix = attribute and method == "prefix" and supports_prefix(model, items)
    base = _BasePass(model, items, types) if use_prefix else None
    logits = base.scores() if base is not None else model.score_last(items, types).float()
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
    if base is not None:
        variant_scores = base.variant_scores(first, top)
    else:
        variant_scores = score_candidates(
            model, remove_positions(items, rows, positions), remove_positions(types, rows, positions), top[rows]
        ).float()
    # Deleting any interaction of a run of identical ones (same item and type) leaves the same
    # session: the run shares one score (its most recent member's), so the tie is exact.
    variant_scores = variant_scores[_run_representative(items, types, rows, positions, first)]
    drops = scores[rows] - variant_scores  # [V, C]

    # Per row, the variant with the largest drop for each candidate: scatter-max over rows.
    best = torch.full((batch, n_candidates), float("-inf"), device=drops.device)
    best = best.scatter_reduce(0, rows.unsqueeze(1).expand_as(drops), drops, reduce="amax")
    is_best = drops == best[rows]
    # Ties: keep the most recent position (largest index) that reaches the maximum.
    no_position = torch.full_like(drops, -1, dtype=torch.long)
    pos_if_best = torch.where(is_best, positions.unsqueeze(1).expand_as(drops), no_position)
    attr_pos = attr_pos.scatter_reduce(0, rows.unsqueeze(1).expand_as(drops), pos_if_best, reduce="amax")
    has_rows = torch.isfinite(best)
    attr_drop = torch.where(has_rows, best, attr_drop)
    return RankedBatch(top, scores, attr_pos, attr_drop)


def _run_representative(items, types, rows, positions, first: int) -> torch.Tensor:
    """For each variant (rows[v], positions[v]), the variant deleting the most recent interaction
    of the run of identical (item, type) neighbours that positions[v] belongs to."""
    batch, width = items.shape
    same_next = (items[:, :-1] == items[:, 1:]) & (types[:, :-1] == types[:, 1:])
    ends = torch.cat([~same_next, same_next.new_ones(batch, 1)], 1)
    columns = torch.arange(width, device=items.device).expand(batch, width)
    run_end = torch.where(ends, columns, width).flip(1).cummin(1).values.flip(1)
    index = torch.full((batch, width - first), -1, dtype=torch.long, device=items.device)
    index[rows, positions - first] = torch.arange(rows.numel(), device=items.device)
    return index[rows, run_end[rows, positions] - first]


# ----------------------------------------------------------------------------- prefix reuse
def supports_prefix(model, items: torch.Tensor) -> bool:
    """Whether ``"prefix"`` can score this batch exactly: a SessionTransformer in eval mode, and no
    row longer than ``max_len`` (the batch is trimmed to its used width first)."""
    return isinstance(model, SessionTransformer) and not model.training and items.shape[1] <= model.cfg.max_len


class _BasePass:
    """One pass over the batch that keeps what every occluded variant reuses: per layer the
    keys/values of every real position, the final hidden states (and their copy-head keys)."""

    def __init__(self, model, items: torch.Tensor, types: torch.Tensor):
        self.model, self.items, self.types = model, items, types
        cfg = model.cfg
        batch, width = items.shape
        d = cfg.d_model
        self.valid = valid = items > 0
        self.positions = valid.long().cumsum(1) * valid
        self.copy_head = bool(getattr(cfg, "copy_head", False))
        bi, ci = valid.nonzero(as_tuple=True)  # real positions only: padding never reaches a real one
        x = model.embed(items[bi, ci], types[bi, ci], self.positions[bi, ci])  # [T, d]
        allowed = model.attention_mask(valid).unsqueeze(1)  # [B, 1, L, L]
        allowed = torch.zeros(allowed.shape, dtype=x.dtype, device=items.device).masked_fill_(~allowed, float("-inf"))
        self.keys, self.values = [], []
        for block in model.blocks:
            qkv = torch.stack(block.qkv(x), 1)  # [T, 3, H, dh]
            padded = x.new_zeros(batch, width, *qkv.shape[1:])
            padded[bi, ci] = qkv
            qp, kp, vp = padded.permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, L, dh] each
            y = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=allowed)
            x = block.finish(x, y.transpose(1, 2)[bi, ci].reshape(-1, d))
            self.keys.append(kp)
            self.values.append(vp)
        hidden = model.final_ln(x)
        self.hidden = x.new_zeros(batch, width, d)
        self.hidden[bi, ci] = hidden
        if self.copy_head:
            self.copy_keys = x.new_zeros(batch, width, d)
            self.copy_keys[bi, ci] = model.copy_k(hidden)

    @cached_property
    def empty(self) -> torch.Tensor:
        """The final state of an empty session (the answer after deleting a row's only interaction)."""
        return self.model.forward(self.items.new_zeros(1, 1), self.types.new_zeros(1, 1))[0, -1]

    def _or_empty(self, has_state: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden`` [N, d] where ``has_state`` [N, 1], else the empty session's state."""
        return hidden if bool(has_state.all()) else torch.where(has_state, hidden, self.empty)

    def scores(self) -> torch.Tensor:
        """``model.score_last`` of the batch [B, n_items + 1] from the cached states."""
        model, items, valid = self.model, self.items, self.valid
        last = self._or_empty(valid[:, -1:], self.hidden[:, -1])  # [B, d]
        return model.score_state(last, items, self.copy_keys if self.copy_head else None)

    def variant_scores(self, first: int, candidates: torch.Tensor) -> torch.Tensor:
        """Scores [V, C] of each row's ``candidates`` [B, C] with one real position p >= ``first``
        deleted, variants in the order of ``(items[:, first:] != 0).nonzero()``."""
        items = self.items
        batch, width = items.shape
        rows, positions = (items[:, first:] != 0).nonzero(as_tuple=True)
        index = torch.full((batch, width - first), -1, dtype=torch.long, device=items.device)
        index[rows, positions] = torch.arange(rows.numel(), device=items.device)
        out = torch.empty(rows.numel(), candidates.shape[1], dtype=torch.float32, device=items.device)

        # Chunks of rows of similar length, each trimmed to its longest row; the deleted columns in
        # blocks of PREFIX_BLOCK (a block recomputes PREFIX_BLOCK x suffix positions per row).
        lengths = self.valid.sum(1)
        heads = self.model.blocks[0].attn.n_heads if len(self.model.blocks) else 1
        slots = min(PREFIX_BLOCK, width - first) * (width - first)
        rows_per_chunk = max(1, PREFIX_CHUNK_ELEMENTS // (heads * slots * (width + slots)))
        if rows_per_chunk >= batch:
            chunks: list = [slice(None)]  # the whole batch: views of the caches, no copies
        else:
            order = lengths.argsort()
            chunks = [order[start:start + rows_per_chunk] for start in range(0, batch, rows_per_chunk)]
        for chunk in chunks:
            cw = int(lengths[chunk].max())
            if cw == 0:
                continue  # only empty sessions: nothing to delete
            left = width - cw
            for block in range(max(first, left), width, PREFIX_BLOCK):
                n_deleted = min(PREFIX_BLOCK, width - block)
                dense = self._chunk_scores(chunk, left, block - left, n_deleted, candidates[chunk])  # [b, n, C]
                where = index[chunk][:, block - first:block - first + n_deleted]
                ok = where >= 0
                out[where[ok]] = dense[ok]
        return out

    def _chunk_scores(self, rows: torch.Tensor | slice, left: int, first: int, n_deleted: int,
                      candidates: torch.Tensor) -> torch.Tensor:
        """Dense [b, n, C] scores of rows ``rows`` trimmed to columns ``left:``; variant k < n deletes
        column ``first + k`` (chunk coordinates). Entries of variants whose column is padding are
        meaningless."""
        model = self.model
        d = model.cfg.d_model
        device = self.items.device
        items, types = self.items[rows, left:], self.types[rows, left:]
        valid, positions = self.valid[rows, left:], self.positions[rows, left:]
        batch, width = items.shape
        n_tail = width - first  # columns from the first deleted one to the end
        k_idx = torch.arange(n_deleted, device=device)
        exists = valid[:, first:first + n_deleted]  # [b, n]: variant k deletes a real interaction
        # Recomputed tokens (b, k, j): the variant deleting column first + k needs column first + j
        # for every j > k. Within a row they sit in slots, the pairs (k, j) in order.
        after = torch.arange(n_tail, device=device)[None, :] > k_idx[:, None]  # [n, tail]
        slot_k, slot_j = after.nonzero(as_tuple=True)
        n_slots = slot_k.numel()
        slot_of = torch.zeros(n_deleted, n_tail, dtype=torch.long, device=device)
        slot_of[slot_k, slot_j] = torch.arange(n_slots, device=device)
        tb, tk, tj = (exists[:, :, None] & after).nonzero(as_tuple=True)
        ts = slot_of[tk, tj]
        columns = first + tj
        # Positions after the deleted one move down by one.
        x = model.embed(items[tb, columns], types[tb, columns], positions[tb, columns] - 1)

        # Keys of slot (k, j): the row's cached keys before the deleted column, and the recomputed
        # keys (k, j') of its own variant, j' <= j. Slots of variants that do not exist see their
        # own (zero) keys only: no NaN, and their outputs are dropped.
        col = torch.arange(width, device=device)
        cached_ok = valid[:, None, :] & (col[None, None, :] < (first + slot_k)[None, :, None])  # [b, S, width]
        own_ok = (slot_k[:, None] == slot_k[None, :]) & (slot_j[None, :] <= slot_j[:, None])  # [S, S]
        allowed = torch.cat([cached_ok, own_ok.expand(batch, n_slots, n_slots)], -1).unsqueeze(1)
        allowed = torch.zeros(allowed.shape, dtype=x.dtype, device=device).masked_fill_(~allowed, float("-inf"))
        last_slots = slot_of[:n_tail - 1, -1]  # (k, tail - 1), k < tail - 1: each variant's most recent position
        last_token = tj == n_tail - 1

        n_layers = len(model.blocks)
        for layer, block in enumerate(model.blocks):
            if tb.numel() == 0:
                break
            q, k, v = block.qkv(x)
            heads, dh = q.shape[1], q.shape[2]
            query = q.new_zeros(batch, n_slots, heads, dh)
            query[tb, ts] = q
            query = query.transpose(1, 2)  # [b, H, S, dh]
            # keys/values [b, H, width + S, dh]: the cached columns, then the recomputed slots
            keys = q.new_empty(batch, width + n_slots, heads, dh)
            values = q.new_empty(batch, width + n_slots, heads, dh)
            keys[:, :width] = self.keys[layer][rows, :, left:].transpose(1, 2)
            values[:, :width] = self.values[layer][rows, :, left:].transpose(1, 2)
            keys[:, width:] = 0  # slots of variants that do not exist
            values[:, width:] = 0
            keys[tb, width + ts] = k
            values[tb, width + ts] = v
            keys, values = keys.transpose(1, 2), values.transpose(1, 2)
            if layer == n_layers - 1 and not self.copy_head:
                # The last layer: only each variant's most recent position is used.
                y = F.scaled_dot_product_attention(query[:, :, last_slots], keys, values,
                                                   attn_mask=allowed[:, :, last_slots])
                attended = y.transpose(1, 2)[tb[last_token], tk[last_token]].reshape(-1, d)
                x = block.finish(x[last_token], attended)
                tb, tk, tj = tb[last_token], tk[last_token], tj[last_token]
                last_token = torch.ones_like(tb, dtype=torch.bool)
            else:
                y = F.scaled_dot_product_attention(query, keys, values, attn_mask=allowed)
                x = block.finish(x, y.transpose(1, 2)[tb, ts].reshape(-1, d))
        final = model.final_ln(x) if tb.numel() else x

        # The variant's most recent state: recomputed at the last column, or, when the last
        # interaction is the deleted one, the cached state one column earlier (empty session: none).
        last = x.new_zeros(batch, n_deleted, d)
        last[tb[last_token], tk[last_token]] = final[last_token]
        if first + n_deleted == width:
            last[:, -1] = self._or_empty(valid[:, -2:-1], self.hidden[rows, -2]) if width >= 2 else self.empty

        flat = last.reshape(-1, d)
        n_cand = candidates.shape[1]
        cand = candidates[:, None, :].expand(batch, n_deleted, n_cand).reshape(-1, n_cand)
        weights = model.output_items()
        if not self.copy_head:
            scores = torch.einsum("vd,vcd->vc", model.output_query(flat).float(), weights[cand].float())
            return scores.view(batch, n_deleted, n_cand)

        # Generation part: log-softmax over the catalogue at the candidates.
        gen = torch.empty(flat.shape[0], n_cand, dtype=torch.float32, device=device)
        step = max(1, LOGIT_CHUNK_ELEMENTS // weights.shape[0])
        for s in range(0, flat.shape[0], step):
            logits = model.logits(flat[s:s + step], weights)  # column 0 is -inf
            top = logits.amax(-1, keepdim=True)
            chosen = logits.gather(1, cand[s:s + step])
            # log-sum-exp, in place
            gen[s:s + step] = chosen - (top + logits.sub_(top).exp_().sum(-1, keepdim=True).log())

        # Pointer over the variant's items: copy-head keys of cached prefix states and of the
        # recomputed ones; distance to the variant's last step is one less before the deleted column.
        copy_keys = self.copy_keys[rows, left:]  # [b, width, d]
        region_ck = copy_keys[:, None, first:].expand(batch, n_deleted, n_tail, d).clone()
        if tb.numel():
            region_ck[tb, tk, tj] = model.copy_k(final)
        query = model.copy_q(last)  # [b, P, d]
        att = torch.cat([torch.einsum("bkd,bsd->bks", query, copy_keys[:, :first]),
                         torch.einsum("bkd,bksd->bks", query, region_ck)], -1) / math.sqrt(d)  # [b, P, width]
        col = torch.arange(width, device=device)
        deleted = first + k_idx
        dist = width - 1 - col[None, :] - (col[None, :] < deleted[:, None]).long()  # [P, width]
        key_mask = valid[:, None, :] & (col[None, None, :] != deleted[None, :, None])  # [b, P, width]
        alpha, log_g, log_1mg = model.pointer(last, att, dist, key_mask)
        match = (items[:, :, None] == candidates[:, None, :]).float()  # [b, width, C]
        copy = torch.einsum("bkw,bwc->bkc", alpha, match)  # [b, P, C]
        scores = model.mix(gen.view(batch, n_deleted, n_cand), copy, log_g, log_1mg)
        return scores.view(batch, n_deleted, n_cand)
