"""SessionTransformer: a SASRec-style causal Transformer over a session's interactions.

Reads top to bottom like SASRec.pytorch:

    input  = item embedding * sqrt(d) + position embedding + event-type embedding
             (+ category embedding)                       -> dropout
    blocks = n_layers x [pre-LayerNorm causal self-attention, pre-LayerNorm feed-forward]
    output = final LayerNorm -> dot product with the (tied) item embedding table

Inputs are LEFT-padded LongTensors [B, L] (0 = padding, most recent interaction at index -1).
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

EVENT_TYPE_INDEX = {"view": 1, "click": 2, "add_to_cart": 3, "purchase": 4}


@dataclass
class ModelConfig:
    n_items: int  # items are 1..n_items, 0 = padding
    n_event_types: int = 5  # 0 = padding + the 4 event types
    n_categories: int = 0  # categories are 1..n_categories, 0 = padding/unknown; 0 disables
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    ffn_mult: int = 4  # feed-forward width = ffn_mult * d_model

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
        b, l, d = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, l, d))


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

        # Query t may attend to key s <= t if s is a real interaction; every query also attends
        # to itself, so a padding query has one key and never produces NaN.
        causal = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()
        eye = torch.eye(L, dtype=torch.bool, device=items.device)
        allowed = (causal & (valid[:, None, :] | eye)).unsqueeze(1)  # [B, 1, L, L]

        for block in self.blocks:
            x = block(x, allowed)
        return self.final_ln(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every catalogue item for hidden states [..., d] -> [..., n_items + 1]."""
        out = hidden @ self.item_emb.weight.t()
        out[..., 0] = float("-inf")  # padding is never recommended
        return out

    def score_last(self, items: torch.Tensor, types: torch.Tensor, categories: torch.Tensor | None = None) -> torch.Tensor:
        """Next-item logits after the most recent interaction: [B, n_items + 1], column 0 = -inf."""
        return self.logits(self.forward(items, types, categories)[:, -1])
