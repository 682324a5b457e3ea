"""SessionTransformer: a SASRec-style causal Transformer over a session's interactions.

Reads top to bottom like SASRec.pytorch:

    input  = item embedding * sqrt(d) + position embedding + event-type embedding
             (+ category embedding)                       -> dropout
    blocks = n_layers x [pre-LayerNorm causal self-attention, pre-LayerNorm feed-forward]
    output = final LayerNorm -> dot product with the (tied) item embedding table
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
from dataclasses import asdict, dataclass, fields

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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Unknown keys (training metadata in config.json) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        assert d % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, L, d = x.shape
        q, k, v = self.qkv(x).view(b, L, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, L, d))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, d: int, n_heads: int, dropout: float, ffn_mult: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn_mult * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_mult * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), allowed))
        return x + self.drop(self.ffn(self.ln2(x)))


class SessionTransformer(nn.Module):
    item_category: torch.Tensor  # buffer, see __init__

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
        self.blocks = nn.ModuleList(Block(d, cfg.n_heads, cfg.dropout, cfg.ffn_mult) for _ in range(cfg.n_layers))
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

    def forward(self, items: torch.Tensor, types: torch.Tensor, categories: torch.Tensor | None = None) -> torch.Tensor:
        """items/types/categories: LEFT-padded [B, L] -> hidden states [B, L, d]."""
        L = items.shape[1]
        if L > self.cfg.max_len:  # keep the most recent max_len interactions
            items, types = items[:, -self.cfg.max_len:], types[:, -self.cfg.max_len:]
            categories = None if categories is None else categories[:, -self.cfg.max_len:]
            L = self.cfg.max_len
        valid = items > 0  # [B, L]
        positions = valid.long().cumsum(1) * valid  # 1..n over real interactions, 0 on padding

        x = self.item_emb(items) * math.sqrt(self.cfg.d_model) + self.pos_emb(positions) + self.type_emb(types)
        if self.cat_emb is not None:
            if categories is None:
                categories = self.item_category[items]
            x = x + self.cat_emb(categories)
        x = self.emb_drop(x) * valid.unsqueeze(-1)

        allowed = self._allowed(valid).unsqueeze(1)  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, allowed)
        return self.final_ln(x)

    @staticmethod
    def _allowed(valid: torch.Tensor) -> torch.Tensor:
        """[B, L, L]: query t may attend to key s <= t if s is a real interaction; every query also
        attends to itself, so a padding query has one key and never produces NaN."""
        L = valid.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=valid.device).tril()
        eye = torch.eye(L, dtype=torch.bool, device=valid.device)
        return causal & (valid[:, None, :] | eye)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Dot-product scores of every catalogue item for hidden states [..., d] -> [..., n_items + 1],
        in float32 even under autocast (bf16 scores would tie and blur the ranking)."""
        with torch.autocast(hidden.device.type, enabled=False):
            out = hidden.float() @ self.item_emb.weight.float().t()
        out[..., 0] = float("-inf")  # padding is never recommended
        return out

    def copy_weights(self, hidden: torch.Tensor, items: torch.Tensor, last_only: bool = False):
        """Pointer weights alpha [B, Lq, L] over the session's positions (0 on padding and on
        future positions) and log g, log(1 - g) [B, Lq]; Lq = 1 with ``last_only``."""
        valid = items > 0
        allowed = self._allowed(valid)
        query = hidden
        if last_only:
            query, allowed = hidden[:, -1:], allowed[:, -1:]
        att = self.copy_q(query) @ self.copy_k(hidden).transpose(1, 2) / math.sqrt(self.cfg.d_model)
        L, Lq = hidden.shape[1], query.shape[1]
        t = torch.arange(L - Lq, L, device=items.device)[:, None]
        dist = (t - torch.arange(L, device=items.device)[None, :]).clamp(0, self.cfg.max_len - 1)
        att = att + self.copy_recency(dist).squeeze(-1)  # learned recency prior
        alpha = att.float().masked_fill(~allowed, float("-inf")).softmax(-1) * valid[:, None, :]
        # a learned share of the pointer mass spread uniformly over the session's items so far
        keys = (allowed & valid[:, None, :]).float()
        eps = torch.sigmoid(self.copy_floor)
        alpha = (1 - eps) * alpha + eps * keys / keys.sum(-1, keepdim=True).clamp_min(1.0)
        z = self.copy_gate(query).float().squeeze(-1)
        return alpha, F.logsigmoid(z), F.logsigmoid(-z)

    def score_last(self, items: torch.Tensor, types: torch.Tensor,
                   categories: torch.Tensor | None = None) -> torch.Tensor:
        """Next-item scores after the most recent interaction: [B, n_items + 1], column 0 = -inf.
        log-probabilities with the copy head, dot products without."""
        if items.shape[1] > self.cfg.max_len:
            items, types = items[:, -self.cfg.max_len:], types[:, -self.cfg.max_len:]
            categories = None if categories is None else categories[:, -self.cfg.max_len:]
        hidden = self.forward(items, types, categories)
        logits = self.logits(hidden[:, -1])
        if not self.cfg.copy_head:
            return logits
        alpha, log_g, log_1mg = self.copy_weights(hidden, items, last_only=True)
        copy = torch.zeros_like(logits).scatter_add_(1, items, alpha[:, 0])[:, 1:]  # column 0 = padding
        log_copy = torch.where(copy > 0, copy.clamp_min(1e-38).log(), float("-inf"))  # NaN-free gradients
        out = torch.logaddexp(log_1mg[:, :1] + logits[:, 1:].log_softmax(-1), log_g[:, :1] + log_copy)
        return F.pad(out, (1, 0), value=float("-inf"))

    def loss(self, items: torch.Tensor, types: torch.Tensor, targets: torch.Tensor,
             categories: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-item negative log-likelihood over every position with a target (> 0):
        full softmax over the catalogue (plus the copy head's pointer mass)."""
        hidden = self.forward(items, types, categories)
        keep = targets > 0
        y = targets[keep] - 1
        logits = hidden[keep] @ self.item_emb.weight[1:].t()  # [N, n_items]; padding is not a class
        if not self.cfg.copy_head:
            return F.cross_entropy(logits.float(), y)
        log_gen = -F.cross_entropy(logits.float(), y, reduction="none")
        alpha, log_g, log_1mg = self.copy_weights(hidden, items)
        copy = (alpha * (items[:, None, :] == targets[:, :, None])).sum(-1)[keep]
        log_p = torch.logaddexp(log_1mg[keep] + log_gen, log_g[keep] + copy.clamp_min(1e-12).log())
        return -log_p.mean()
