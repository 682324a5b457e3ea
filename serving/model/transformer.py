"""SessionTransformer: a SASRec-style causal Transformer over a session's interactions.

Reads top to bottom like SASRec.pytorch:

    input  = item embedding * sqrt(d) + position embedding + event-type embedding
             (+ category embedding)                       -> dropout
    blocks = n_layers x [pre-LayerNorm causal self-attention, pre-LayerNorm feed-forward]
    output = final LayerNorm -> dot product with the (tied) item embedding table
             (or scale x cosine, ``logit_scale``)
             (+ copy head: a gated pointer over the session's own items, see below)

Inputs are LEFT-padded LongTensors [B, L] (0 = padding, most recent interaction at index -1).

Copy head (``copy_head=True``, the default). Sessions repeat items a lot (re-views, view ->
click -> add_to_cart -> purchase of one item; see docs/results.md for how many test targets
are repeats) and a tied dot product copies rare items badly: their embeddings are barely
trained, so h.e_i stays small. As in pointer-generator / RepeatNet:

    p(i) = (1 - g) * softmax(h . E)_i + g * sum_{s <= t, item_s = i} alpha_s
    alpha = (1 - eps) * softmax_s(q(h_t) . k(h_s) / sqrt(d) + r[t - s]) + eps * uniform_s
            over the session's real items s <= t; g = sigmoid(w . h_t)

with a learned recency prior r and a learned uniform share eps (pointer attention alone
turned out over-sharp on small data: it put almost all mass on one position and missed the
others; docs/results.md has what the two added).

``score_last`` then returns log p (column 0 = -inf); without the head it returns h . E.
On data without repeats the gate learns to close and the model is plain SASRec.

Positions count from the first real interaction of the row (1, 2, ..., n; 0 = padding), so
the hidden state at step t is the same whether the row is a training prefix or the whole
session at serving time, and trimming left padding never changes the output.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from contract.vocab import EVENT_TYPES

# Index 0 is padding; an unknown type never reaches the model (the worker validates events).
EVENT_TYPE_INDEX = {event_type: n for n, event_type in enumerate(EVENT_TYPES, 1)}


@dataclass
class ModelConfig:
    n_items: int  # items are 1..n_items, 0 = padding
    n_event_types: int = 5  # 0 = padding + the 4 event types
    n_categories: int = 0  # categories are 1..n_categories, 0 = padding/unknown; 0 disables
    # The architecture defaults are the training defaults too: serving.offline.train.TrainConfig
    # takes them from here.
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.3
    ffn_mult: int = 4  # feed-forward width = ffn_mult * d_model
    copy_head: bool = True  # gated pointer over the session's items (see module docstring)
    # > 0: scores are this scale times the cosine of state and item embedding (NISER / CORE's
    # normalised representations: popular items cannot win by norm alone); 0: plain dot products
    logit_scale: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Unknown keys (training metadata in config.json) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention; the mask comes from the caller (SessionTransformer.attention_mask)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.d_model % cfg.n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs x [..., d] -> queries, keys, values [..., H, d / H]."""
        return self.qkv(x).unflatten(-1, (3, self.n_heads, -1)).unbind(-3)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x [B, L, d], allowed [B, 1, L, L] (True: may attend) -> [B, L, d] before the projection."""
        q, k, v = (t.transpose(1, 2) for t in self.split(x))  # [B, H, L, dh]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return y.transpose(1, 2).flatten(2)  # [B, L, d]


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: x + Attn(LN(x)), then x + FFN(LN(x)).

    ``qkv`` and ``finish`` are the two halves around the attention itself, so a caller that attends
    differently (serving.model.attribution reuses cached keys) runs the same block."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.ln1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_mult * d), nn.GELU(), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.ffn_mult * d, d))
        self.drop = nn.Dropout(cfg.dropout)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Block inputs x [..., d] -> this block's queries, keys, values [..., H, d / H]."""
        return self.attn.split(self.ln1(x))

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Block inputs x [..., d] and their attention outputs [..., d] (heads concatenated) -> block outputs."""
        x = x + self.drop(self.attn.proj(attended))
        return x + self.drop(self.ffn(self.ln2(x)))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        return self.finish(x, self.attn(self.ln1(x), allowed))


class SessionTransformer(nn.Module):
    """The model (module docstring). Public surface: ``forward`` (hidden states), ``score_last``
    (serving), ``loss`` (training); the pieces they are made of, for callers that cache and
    recompute parts of a pass (serving.model.attribution): ``embed``, ``attention_mask``,
    ``Block.qkv``/``Block.finish``, ``logits``, ``pointer``, ``mix``, ``score_state``; and ``expand`` (surgery: a
    larger catalogue, known rows kept)."""

    item_category: torch.Tensor  # buffer [n_items + 1], see __init__

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.item_emb = nn.Embedding(cfg.n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len + 1, d, padding_idx=0)
        self.type_emb = nn.Embedding(cfg.n_event_types, d, padding_idx=0)
        self.cat_emb = nn.Embedding(cfg.n_categories + 1, d, padding_idx=0) if cfg.n_categories > 0 else None
        # item index -> category index; lets callers omit `categories` (0 = unknown).
        self.register_buffer("item_category", torch.zeros(cfg.n_items + 1, dtype=torch.long))
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_ln = nn.LayerNorm(d)
        if cfg.copy_head:
            self.copy_q = nn.Linear(d, d)
            self.copy_k = nn.Linear(d, d)
            self.copy_gate = nn.Linear(d, 1)
            self.copy_recency = nn.Embedding(cfg.max_len, 1)  # bias by distance t - s
            self.copy_floor = nn.Parameter(torch.tensor(-2.0))  # logit of the uniform share of alpha
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    # ------------------------------------------------------------------------- the pass
    def embed(self, items: torch.Tensor, types: torch.Tensor, positions: torch.Tensor,
              categories: torch.Tensor | None = None) -> torch.Tensor:
        """Input vectors [..., d] of interactions [...] at ``positions`` (1..n, 0 = padding), before
        dropout; ``categories`` default to each item's own."""
        x = self.item_emb(items) * math.sqrt(self.cfg.d_model) + self.pos_emb(positions) + self.type_emb(types)
        if self.cat_emb is not None:
            x = x + self.cat_emb(self.item_category[items] if categories is None else categories)
        return x

    @staticmethod
    def attention_mask(valid: torch.Tensor) -> torch.Tensor:
        """valid [B, L] -> [B, L, L]: query t may attend to key s <= t if s is a real interaction;
        every query also attends to itself, so a padding query has one key and never produces NaN."""
        L = valid.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=valid.device).tril()
        eye = torch.eye(L, dtype=torch.bool, device=valid.device)
        return causal & (valid[:, None, :] | eye)

    def forward(self, items: torch.Tensor, types: torch.Tensor, categories: torch.Tensor | None = None) -> torch.Tensor:
        """items/types/categories: LEFT-padded [B, L] -> hidden states [B, min(L, max_len), d] of the
        most recent max_len interactions (the one place the window is applied)."""
        items, types = items[:, -self.cfg.max_len:], types[:, -self.cfg.max_len:]
        categories = None if categories is None else categories[:, -self.cfg.max_len:]
        valid = items > 0  # [B, L]
        positions = valid.long().cumsum(1) * valid  # 1..n over real interactions, 0 on padding
        x = self.emb_drop(self.embed(items, types, positions, categories)) * valid.unsqueeze(-1)  # [B, L, d]
        allowed = self.attention_mask(valid).unsqueeze(1)  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, allowed)
        return self.final_ln(x)

    # ------------------------------------------------------------------------- the heads
    def output_query(self, hidden: torch.Tensor) -> torch.Tensor:
        """States [..., d] as the output layer uses them: unit length under ``logit_scale``."""
        return F.normalize(hidden, dim=-1) if self.cfg.logit_scale else hidden

    def output_items(self) -> torch.Tensor:
        """The output layer's item vectors [n_items + 1, d]: the tied embedding table, or its rows at
        length ``logit_scale``, so that output_query(h) . output_items() is the score."""
        w = self.item_emb.weight
        return F.normalize(w, dim=-1) * self.cfg.logit_scale if self.cfg.logit_scale else w

    def logits(self, hidden: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every catalogue item for hidden states [..., d] -> [..., n_items + 1],
        in float32 even under autocast (bf16 scores would tie and blur the ranking). ``items``:
        output_items() computed once by a caller that scores in chunks."""
        items = self.output_items() if items is None else items
        with torch.autocast(hidden.device.type, enabled=False):
            out = self.output_query(hidden.float()) @ items.float().t()
        out[..., 0] = float("-inf")  # padding is never recommended
        return out

    def pointer(self, query: torch.Tensor, att: torch.Tensor, dist: torch.Tensor,
                key_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The copy head's pointer. query: the states h_t [..., d] it is asked for; att [..., K]:
        copy_q(h_t) . copy_k(h_s) / sqrt(d) for each key s; dist [..., K]: t - s; key_mask [..., K]:
        s is a real interaction at or before t -> alpha [..., K] (0 off the mask; an empty session
        points nowhere), log g [...], log(1 - g) [...]."""
        att = att + self.copy_recency(dist.clamp(0, self.cfg.max_len - 1)).squeeze(-1)  # learned recency prior
        any_key = key_mask.any(-1, keepdim=True)
        # rows without a key take an unmasked (finite) softmax, then * 0: no NaN, not even in gradients
        alpha = att.float().masked_fill(~(key_mask | ~any_key), float("-inf")).softmax(-1) * key_mask
        # a learned share of the pointer mass spread uniformly over the session's items so far
        keys = key_mask.float()
        eps = torch.sigmoid(self.copy_floor)
        alpha = (1 - eps) * alpha + eps * keys / keys.sum(-1, keepdim=True).clamp_min(1.0)
        z = self.copy_gate(query).float().squeeze(-1)
        return alpha, F.logsigmoid(z), F.logsigmoid(-z)

    @staticmethod
    def mix(log_gen: torch.Tensor, copy: torch.Tensor, log_g: torch.Tensor, log_1mg: torch.Tensor) -> torch.Tensor:
        """log p = log((1 - g) * p_gen + g * copy) from log p_gen [..., C], the pointer mass copy [..., C]
        of the same items and log g, log(1 - g) [...]."""
        log_copy = torch.where(copy > 0, copy.clamp_min(1e-38).log(), float("-inf"))  # NaN-free gradients
        return torch.logaddexp(log_1mg[..., None] + log_gen, log_g[..., None] + log_copy)

    def copy_weights(self, hidden: torch.Tensor, items: torch.Tensor):
        """Pointer weights alpha [B, L, L] of every position over the session's positions (0 on
        padding and on future positions) and log g, log(1 - g) [B, L]."""
        L = hidden.shape[1]
        valid = items > 0
        att = self.copy_q(hidden) @ self.copy_k(hidden).transpose(1, 2) / math.sqrt(self.cfg.d_model)  # [B, L, L]
        steps = torch.arange(L, device=items.device)
        dist = steps[:, None] - steps[None, :]  # [L, L]: t - s
        return self.pointer(hidden, att, dist, self.attention_mask(valid) & valid[:, None, :])

    def score_state(self, last: torch.Tensor, items: torch.Tensor,
                    copy_keys: torch.Tensor | None = None) -> torch.Tensor:
        """Next-item scores [B, n_items + 1] (column 0 = -inf) from the most recent final state
        last [B, d] of sessions items [B, L]; copy_keys [B, L, d]: copy_k of the sessions' final
        states, needed with the copy head. log-probabilities with the copy head, dot products without."""
        logits = self.logits(last)  # [B, n_items + 1]
        if not self.cfg.copy_head:
            return logits
        assert copy_keys is not None, "the copy head needs the sessions' copy keys"
        L = items.shape[1]
        att = torch.einsum("bd,bld->bl", self.copy_q(last), copy_keys) / math.sqrt(self.cfg.d_model)  # [B, L]
        dist = L - 1 - torch.arange(L, device=items.device)  # [L]
        alpha, log_g, log_1mg = self.pointer(last, att, dist, items > 0)
        gen = F.pad(logits[:, 1:].log_softmax(-1), (1, 0), value=float("-inf"))  # [B, n_items + 1]
        # Pointer mass is 0 off the session's items, where the mix is log(1 - g) + gen exactly: mix
        # only at the session's items [B, L], each item once (its most recent position; the others
        # and padding, with a finite stand-in, write to column 0, reset to -inf after: one write and
        # one gradient per item, no NaN).
        mass = torch.zeros_like(logits).scatter_add_(1, items, alpha).gather(1, items)  # [B, L]: mass of each item
        mixed = self.mix(gen.gather(1, items).masked_fill(items == 0, 0.0), mass, log_g, log_1mg)
        again = (items[:, :, None] == items[:, None, :]).triu(1).any(-1)  # [B, L]: the item recurs later
        out = (log_1mg[:, None] + gen).scatter(1, items.masked_fill(again, 0), mixed)
        out[:, 0] = float("-inf")  # padding is never recommended
        return out

    def score_last(self, items: torch.Tensor, types: torch.Tensor,
                   categories: torch.Tensor | None = None) -> torch.Tensor:
        """Next-item scores after the most recent interaction of LEFT-padded sessions [B, L]:
        [B, n_items + 1] (``score_state``)."""
        hidden = self.forward(items, types, categories)  # [B, L', d], L' = min(L, max_len)
        copy_keys = self.copy_k(hidden) if self.cfg.copy_head else None
        return self.score_state(hidden[:, -1], items[:, -hidden.shape[1]:], copy_keys)

    def loss(self, items: torch.Tensor, types: torch.Tensor, targets: torch.Tensor,
             categories: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-item negative log-likelihood over every position with a target (> 0):
        full softmax over the catalogue (plus the copy head's pointer mass)."""
        hidden = self.forward(items, types, categories)
        keep = targets > 0
        y = targets[keep] - 1
        logits = self.output_query(hidden[keep]) @ self.output_items()[1:].t()  # [N, n_items]; padding is not a class
        if not self.cfg.copy_head:
            return F.cross_entropy(logits.float(), y)
        log_gen = -F.cross_entropy(logits.float(), y, reduction="none")
        alpha, log_g, log_1mg = self.copy_weights(hidden, items)
        copy = (alpha * (items[:, None, :] == targets[:, :, None])).sum(-1)[keep]
        log_p = torch.logaddexp(log_1mg[keep] + log_gen, log_g[keep] + copy.clamp_min(1e-12).log())
        return -log_p.mean()

    # ------------------------------------------------------------------------- surgery
    @torch.no_grad()
    def expand(self, item_rows: Sequence[int], category_rows: Sequence[int] = (),
               item_category: torch.Tensor | None = None) -> "SessionTransformer":
        """A copy indexed by a larger catalogue: ``item_rows[k]`` is this model's index of the new
        item k + 1 (0: a new item), ``category_rows`` likewise for categories, ``item_category``
        [len(item_rows) + 1] the new category of each item (default: unknown). Same configuration
        otherwise and the same weights, every known row copied; new rows initialised as
        ``__init__`` initialises them (global torch seed)."""
        cfg = replace(self.cfg, n_items=len(item_rows),
                      n_categories=len(category_rows) if self.cfg.n_categories else 0)
        grown = SessionTransformer(cfg)
        state = self.state_dict()
        state["item_emb.weight"] = _rows(state["item_emb.weight"], grown.item_emb.weight, item_rows)
        state["item_category"] = grown.item_category
        if grown.cat_emb is not None:
            state["cat_emb.weight"] = _rows(state["cat_emb.weight"], grown.cat_emb.weight, category_rows)
            if item_category is not None:
                state["item_category"] = item_category
        grown.load_state_dict(state)
        return grown.to(self.item_emb.weight.device).train(self.training)


def _rows(old: torch.Tensor, fresh: torch.Tensor, old_index: Sequence[int]) -> torch.Tensor:
    """``fresh`` [1 + n, ...] with row 1 + k replaced by ``old`` row ``old_index[k]`` where that is
    not 0 (0: the id is new, its fresh row stays)."""
    out = fresh.detach().clone()
    index = torch.tensor(list(old_index), dtype=torch.long)
    known = index > 0
    out[1:][known] = old[index[known].to(old.device)].to(out.device)
    return out
