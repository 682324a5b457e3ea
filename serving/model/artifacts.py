"""A trained model directory and the vocabulary that maps raw ids to model indices.

    DIR/config.json   ModelConfig fields at the top level, plus "training": {metadata}
    DIR/weights.pt    state_dict of SessionTransformer
    DIR/vocab.json    {"items": [...], "categories": [...], "item_category": {item: category},
                       "popularity": [count per item, index order]}

Item index i+1 <-> vocab["items"][i] (index 0 is padding); category index j+1 <->
vocab["categories"][j] (0 = unknown). Popularity counts come from the training split only.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable

import torch

from serving.model.sessions import Session, id_sort_key
from serving.model.transformer import ModelConfig, SessionTransformer


class Vocab:
    def __init__(self, items: list[str], categories: list[str] | None = None,
                 item_category: dict[str, str] | None = None, popularity: list[int] | None = None):
        self.items = list(items)
        self.categories = list(categories or [])
        self.item_category: dict[str, str] = dict(item_category or {})
        counts = list(popularity) if popularity is not None else [0] * len(self.items)
        if len(counts) != len(self.items):
            raise ValueError("popularity must have one count per item")
        self.popularity: dict[str, int] = dict(zip(self.items, (int(c) for c in counts)))
        self._item_index = {it: i + 1 for i, it in enumerate(self.items)}
        self._cat_index = {c: j + 1 for j, c in enumerate(self.categories)}

    # --- items
    @property
    def n_items(self) -> int:
        return len(self.items)

    def encode_item(self, item_id: str) -> int:
        """Model index of a raw item id, 0 if unknown."""
        return self._item_index.get(str(item_id), 0)

    def decode(self, index: int) -> str:
        """Raw item id of a model index (1..n_items)."""
        if not 1 <= int(index) <= len(self.items):
            raise IndexError(f"item index {index} outside 1..{len(self.items)}")
        return self.items[int(index) - 1]

    def __contains__(self, item_id: str) -> bool:
        return str(item_id) in self._item_index

    # --- categories
    @property
    def n_categories(self) -> int:
        return len(self.categories)

    def encode_category(self, category_id: str | None) -> int:
        return 0 if category_id is None else self._cat_index.get(str(category_id), 0)

    def category_of_index(self) -> torch.Tensor:
        """LongTensor [n_items + 1]: category index of each item index (0 = none/padding)."""
        out = torch.zeros(len(self.items) + 1, dtype=torch.long)
        for i, it in enumerate(self.items):
            out[i + 1] = self.encode_category(self.item_category.get(it))
        return out

    def popularity_array(self) -> torch.Tensor:
        """FloatTensor [n_items + 1] of training counts by index (index 0 = 0)."""
        return torch.tensor([0.0] + [float(self.popularity[it]) for it in self.items])

    # --- (de)serialisation
    def to_dict(self) -> dict:
        return {
            "items": self.items,
            "categories": self.categories,
            "item_category": self.item_category,
            "popularity": [self.popularity[it] for it in self.items],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        return cls(d["items"], d.get("categories"), d.get("item_category"), d.get("popularity"))

    @classmethod
    def build(cls, sessions: Iterable[Session], train_counts: Counter | None = None) -> "Vocab":
        """Catalogue = every item in ``sessions`` (as SASRec: all ids of the dataset file),
        ordered numerically when ids are numbers; categories as first seen per item."""
        items, item_category = _catalogue(sessions)
        ordered = sorted(items, key=id_sort_key)
        categories = sorted(set(item_category.values()), key=id_sort_key)
        counts = train_counts or Counter()
        return cls(ordered, categories, item_category, [counts.get(it, 0) for it in ordered])

    def extended(self, sessions: Iterable[Session]) -> "Vocab":
        """This catalogue with the items and categories of ``sessions`` it lacks appended, so every
        known id keeps its index (a warm start copies rows by id). Known items keep their category;
        popularity is reset (it is the new training part's to set)."""
        items, item_category = _catalogue(sessions)
        new_items = sorted(items - set(self.items), key=id_sort_key)
        merged = item_category | self.item_category
        new_categories = sorted(set(merged.values()) - set(self.categories), key=id_sort_key)
        return Vocab(self.items + new_items, self.categories + new_categories, merged)


def _catalogue(sessions: Iterable[Session]) -> tuple[set[str], dict[str, str]]:
    """Every item id of ``sessions`` and each item's first-seen category."""
    items: set[str] = set()
    item_category: dict[str, str] = {}
    for s in sessions:
        for x in s.interactions:
            items.add(x.item_id)
            if x.category_id is not None and x.item_id not in item_category:
                item_category[x.item_id] = x.category_id
    return items, item_category


def expanded(model: SessionTransformer, vocab: Vocab, catalogue: Vocab) -> SessionTransformer:
    """``model`` (indexed by ``vocab``) re-indexed by ``catalogue`` (``vocab.extended(...)``), by id:
    ``SessionTransformer.expand`` with each catalogue id's row in ``vocab`` (0 = new)."""
    return model.expand([vocab.encode_item(item) for item in catalogue.items],
                        [vocab.encode_category(c) for c in catalogue.categories],
                        catalogue.category_of_index())


def save_model_dir(out_dir: str | Path, model: SessionTransformer, vocab: Vocab, training: dict | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = model.cfg.to_dict() | {"training": training or {}, "format_version": 1}
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str))
    (out / "vocab.json").write_text(json.dumps(vocab.to_dict()))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, out / "weights.pt")
    return out


def load_config(path: str | Path) -> dict:
    return json.loads((Path(path) / "config.json").read_text())


def trained_catalogue(config: dict) -> str:
    """The catalogue a model's items come from, from its config.json: the training data's
    ``catalogue`` (a retrain names the site's), else its format (``synthetic``, ``diginetica``,
    ``sasrec``); ``stream`` for a retrain written before retrains named it."""
    data = config.get("training", {}).get("data", {})
    return data.get("catalogue") or data.get("format") or "stream"


def load_model_dir(path: str | Path, device: str | torch.device = "cpu") -> tuple[SessionTransformer, Vocab]:
    """(model in eval mode on ``device``, Vocab) from a directory written by ``save_model_dir``."""
    p = Path(path)
    raw = load_config(p)
    raw.setdefault("copy_head", False)  # directories written before the copy head existed
    cfg = ModelConfig.from_dict(raw)
    vocab = Vocab.from_dict(json.loads((p / "vocab.json").read_text()))
    model = SessionTransformer(cfg)
    model.load_state_dict(torch.load(p / "weights.pt", map_location="cpu", weights_only=True))
    return model.to(device).eval(), vocab
