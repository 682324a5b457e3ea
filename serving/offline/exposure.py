"""Exposure and diversity of the top-k lists of an evaluation: pure numpy functions, no servers.

Inputs are model indices: ``top_lists`` [U, k] holds each evaluated user's list (0 = an empty slot,
e.g. a masked item; it counts for nothing), items are 1..n_items, ``train_counts`` [n_items + 1]
is the training popularity by index (index 0 ignored), ``item_category`` [n_items + 1] the category
index of each item (0 = unknown; serving.model.artifacts.Vocab.category_of_index).

* ``coverage``: fraction of the catalogue (n_items) that appears in at least one list; the same
  number as ranking_metrics.coverage (``coverage@10``).
* ``gini``: Gini coefficient of item exposure (slots per item) over ALL catalogue items, items never
  recommended included as zeros: 0 when every item is shown equally often, (n - 1) / n when all
  slots go to one item (contract/exposure.py, which the worker's live Gini uses too).
* ``long_tail_share``: share of the filled slots going to items outside the head, the top 20% of the
  catalogue by training popularity: the ceil(0.2 · n_items) items with the highest counts, ties
  broken by the lower index (so the head is exactly that many items).
* ``category_diversity``: intra-list diversity, the mean over lists of the fraction of item pairs
  in the list whose categories differ. Items of unknown category are skipped (pairs are counted
  among the items with a known category); a list with fewer than two such items is left out.
* ``novelty``: mean self-information -log2 p(i) of the recommended slots, p(i) = (count(i) + 1) /
  (total + n_items): the training popularity, add-one smoothed so an item never seen in training
  has a finite value.
"""
from __future__ import annotations

import math

import numpy as np

from contract.exposure import HEAD_FRACTION, gini  # shared with the worker's live metrics


def _slots(top_lists) -> np.ndarray:
    lists = np.asarray(top_lists, dtype=np.int64)
    return lists.reshape(len(lists), -1) if lists.size else np.zeros((0, 0), dtype=np.int64)


def exposure_counts(top_lists, n_items: int) -> np.ndarray:
    """[n_items + 1] number of slots each item fills across all lists (index 0 = empty slots, zeroed)."""
    flat = _slots(top_lists).ravel()
    counts = np.bincount(flat[(flat > 0) & (flat <= n_items)], minlength=n_items + 1)
    counts[0] = 0
    return counts


def coverage(top_lists, n_items: int) -> float:
    """Fraction of items 1..n_items that appear in at least one list."""
    if not n_items:
        return 0.0
    return float(np.count_nonzero(exposure_counts(top_lists, n_items)[1:])) / n_items


def head_items(train_counts, fraction: float = HEAD_FRACTION) -> np.ndarray:
    """Boolean [n_items + 1]: the ceil(fraction · n_items) most popular items (ties: lower index first)."""
    counts = np.asarray(train_counts, dtype=np.float64)
    n_items = counts.size - 1
    n_head = min(n_items, math.ceil(fraction * n_items - 1e-9))
    order = np.lexsort((np.arange(1, n_items + 1), -counts[1:]))  # by count desc, then index
    head = np.zeros(n_items + 1, dtype=bool)
    head[1 + order[:n_head]] = True
    return head


def long_tail_share(top_lists, train_counts, fraction: float = HEAD_FRACTION) -> float:
    """Share of the filled slots that go to items outside the head (see :func:`head_items`)."""
    head = head_items(train_counts, fraction)
    flat = _slots(top_lists).ravel()
    flat = flat[(flat > 0) & (flat < head.size)]
    return float(np.mean(~head[flat])) if flat.size else 0.0


def category_diversity(top_lists, item_category) -> float:
    """Mean over lists of the fraction of pairs of known-category items with different categories."""
    cats = np.asarray(item_category, dtype=np.int64)
    per_list = []
    for row in _slots(top_lists):
        row = row[(row > 0) & (row < cats.size)]
        c = cats[row]
        c = c[c > 0]
        m = c.size
        if m < 2:
            continue
        _, sizes = np.unique(c, return_counts=True)
        same = float((sizes * (sizes - 1)).sum()) / 2.0
        pairs = m * (m - 1) / 2.0
        per_list.append(1.0 - same / pairs)
    return float(np.mean(per_list)) if per_list else 0.0


def novelty(top_lists, train_counts) -> float:
    """Mean -log2 p(i) over the filled slots, p(i) = (count(i) + 1) / (Σ counts + n_items)."""
    counts = np.asarray(train_counts, dtype=np.float64).copy()
    counts[0] = 0.0
    n_items = counts.size - 1
    flat = _slots(top_lists).ravel()
    flat = flat[(flat > 0) & (flat <= n_items)]
    if not flat.size:
        return 0.0
    p = (counts[flat] + 1.0) / (counts.sum() + n_items)
    return float(np.mean(-np.log2(p)))


def exposure_metrics(top_lists, n_items: int, train_counts, item_category=None) -> dict[str, float]:
    """Every exposure and diversity figure of one set of lists, under the names reports use.
    ``category_diversity`` is left out when there are no categories."""
    out = {
        "coverage": coverage(top_lists, n_items),
        "gini": gini(exposure_counts(top_lists, n_items)[1:]),
        "long_tail_share": long_tail_share(top_lists, train_counts),
        "novelty": novelty(top_lists, train_counts),
    }
    if item_category is not None and np.any(np.asarray(item_category) > 0):
        out["category_diversity"] = category_diversity(top_lists, item_category)
    return out
