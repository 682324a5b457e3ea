"""Session-based kNN baselines (SKNN, V-SKNN, STAN, VMIS-kNN) as batched numpy functions; the
validation grid that tunes them is serving/offline/session_knn_grid.py.

One scoring rule with switches, fit on training sessions in time order (a session's index is its
time: higher = more recent). For the current session s (its items at positions p = 1..L):

1. Candidates: the training sessions sharing an item with s. ``sampling="recent"``: the ``m`` most
   recent of them (SKNN, V-SKNN, STAN; Jannach & Ludewig 2017). ``sampling="per_item"``: the index
   keeps only each item's ``m`` most recent sessions and the candidates are the union of those
   lists over s's items (VMIS-kNN, Kersbergen et al., SIGMOD 2022), so a popular item costs at
   most m look-ups.
2. Similarity sim(s, n) = sum over items i of s found in n of w(p_i), p_i the last position of i
   in s (in the per-item index an item only counts for the sessions of its list). w: ``none`` 1
   (SKNN), ``linear`` p / L (V-SKNN, VMIS-kNN), ``exp`` exp((p - L) / lambda_pos) (STAN).
   ``normalize``: divided by sqrt(|s| |n|) (distinct items; cosine for w = 1; STAN).
   ``lambda_recency`` > 0 multiplies by exp(-(N - 1 - n) / lambda_recency), N training sessions:
   STAN's neighbour recency, here in sessions because the files carry no timestamps.
3. Neighbours: the ``k`` most similar candidates (ties: the more recent).
4. Item score = sum over neighbours n containing i of sim(s, n) x d(i, n). d = 1, or with
   ``lambda_item`` > 0 STAN's exp(-|q_n(i) - q_n*| / lambda_item): q_n(i) the position of i in n,
   q_n* the position in n of the most recent item of s that n contains. ``idf``: times
   log(N / sessions containing i) (the IDF weighting of Ludewig et al.'s V-SKNN and VMIS-kNN).

Scores are scaled to a row maximum of 1 and get 1e-6 x normalised popularity so that items no
neighbour holds are ranked by popularity rather than at random. Nothing is removed: the current
session's items stay rankable (the benchmark's protocol).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import torch

WEIGHTINGS = ("none", "linear", "exp")


@dataclass(frozen=True)
class KnnConfig:
    k: int = 100
    m: int = 1000  # sample size
    sampling: str = "recent"  # recent | per_item
    weighting: str = "linear"  # none | linear | exp
    lambda_pos: float = 1.0  # exp weighting only
    normalize: bool = False
    lambda_recency: float = 0.0  # 0: off
    lambda_item: float = 0.0  # 0: off
    idf: bool = False


# the values chosen on validation (``python -m serving.offline.session_knn``, docs/session-knn-grid.json):
# the grid point with the best validation MRR@20
TUNED: dict[str, KnnConfig] = {
    "sknn": KnnConfig(k=100, m=500, weighting="none", normalize=True),
    "vsknn": KnnConfig(k=50, m=500, weighting="linear", idf=True),
    "stan": KnnConfig(k=100, m=1000, weighting="exp", lambda_pos=1.0, normalize=True, lambda_recency=50_000.0,
                      lambda_item=4.0),
    "vmis": KnnConfig(k=50, m=1000, sampling="per_item", weighting="linear", idf=True),
}


@dataclass
class SessionIndex:
    """Training sessions as distinct items with their last position, both ways round."""

    n_sessions: int
    n_items: int
    sess_ptr: np.ndarray  # [N+1] session n's items are sess_items[sess_ptr[n]:sess_ptr[n+1]]
    sess_items: np.ndarray
    sess_pos: np.ndarray  # 1-based last position of the item in its session
    item_ptr: np.ndarray  # [V+2] item i's postings are post_sess[item_ptr[i]:item_ptr[i+1]], oldest first
    post_sess: np.ndarray
    post_pos: np.ndarray
    idf: np.ndarray  # [V+1]
    popularity: np.ndarray  # [V+1] in [0, 1]


def _last_occurrences(rows: np.ndarray, items: np.ndarray, pos: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep each (row, item)'s last position; the result is sorted by (row, item)."""
    order = np.lexsort((pos, items, rows))
    rows, items, pos = rows[order], items[order], pos[order]
    last = np.ones(len(rows), dtype=bool)
    last[:-1] = (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])
    return rows[last], items[last], pos[last]


def _positions(lengths: np.ndarray) -> np.ndarray:
    """1..n for each n of ``lengths``, concatenated."""
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(int(lengths.sum())) - starts + 1


def _expand(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(which range, index) for every index of the ranges [starts, ends)."""
    counts = np.maximum(ends - starts, 0)
    which = np.repeat(np.arange(len(starts)), counts)
    offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return which, starts[which] + offset


def fit_index(train: list[np.ndarray], n_items: int) -> SessionIndex:
    lengths = np.array([len(s) for s in train], dtype=np.int64)
    rows = np.repeat(np.arange(len(train)), lengths)
    items = np.concatenate(train) if train else np.zeros(0, dtype=np.int64)
    rows, items, pos = _last_occurrences(rows, items, _positions(lengths))
    n = len(train)
    sess_ptr = np.searchsorted(rows, np.arange(n + 1))
    by_item = np.lexsort((rows, items))  # postings oldest first
    item_ptr = np.searchsorted(items[by_item], np.arange(n_items + 2))
    df = np.diff(item_ptr)[: n_items + 1].astype(np.float64)
    idf = np.where(df > 0, np.log(max(n, 1) / np.maximum(df, 1)), 0.0)
    pop = df / max(df.max(), 1.0)
    return SessionIndex(n, n_items, sess_ptr, items, pos, item_ptr, rows[by_item], pos[by_item], idf, pop)


def query_weights(pos: np.ndarray, length: np.ndarray, cfg: KnnConfig) -> np.ndarray:
    """w(p) of an item at 1-based position ``pos`` of a session of ``length`` items."""
    if cfg.weighting == "none":
        return np.ones(len(pos))
    if cfg.weighting == "linear":
        return pos / length
    if cfg.weighting == "exp":
        return np.exp((pos - length) / cfg.lambda_pos)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}")


def neighbours(index: SessionIndex, rows: np.ndarray, items: np.ndarray, pos: np.ndarray, length: np.ndarray,
               n_rows: int, cfg: KnnConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The k neighbours of each query row: (row, session, similarity, q_n*) sorted by row.

    ``rows``, ``items``, ``pos``: the queries' distinct items with their last 1-based positions;
    ``length``: [n_rows] each query's length L."""
    start, end = index.item_ptr[items], index.item_ptr[items + 1]
    if cfg.sampling == "per_item":
        start = np.maximum(start, end - cfg.m)
    elif cfg.sampling != "recent":
        raise ValueError("sampling must be recent or per_item")
    q, post = _expand(start, end)
    sess, npos = index.post_sess[post], index.post_pos[post]
    w = query_weights(pos[q], length[rows[q]], cfg)
    key = rows[q] * index.n_sessions + sess
    order = np.lexsort((pos[q], key))  # by (row, session), the most recent query item last
    key, w, npos = key[order], w[order], npos[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(key)) - 1
    sim = np.add.reduceat(w, starts) if len(key) else np.zeros(0)
    match = npos[ends]  # position in n of the most recent item of s that n contains
    key = key[starts]
    r, s = key // index.n_sessions, key % index.n_sessions
    if cfg.sampling == "recent":  # sessions ascend within a row: keep each row's last m
        row_end = np.searchsorted(r, np.arange(n_rows), side="right")
        keep = row_end[r] - np.arange(len(r)) <= cfg.m
        r, s, sim, match = r[keep], s[keep], sim[keep], match[keep]
    if cfg.normalize:
        n_distinct = np.bincount(rows, minlength=n_rows)
        sim = sim / np.sqrt(n_distinct[r] * np.diff(index.sess_ptr)[s])
    if cfg.lambda_recency > 0:
        sim = sim * np.exp(-(index.n_sessions - 1 - s) / cfg.lambda_recency)
    order = np.lexsort((-s, -sim, r))
    r, s, sim, match = r[order], s[order], sim[order], match[order]
    row_start = np.searchsorted(r, np.arange(n_rows))
    keep = np.arange(len(r)) - row_start[r] < cfg.k
    return r[keep], s[keep], sim[keep], match[keep]


def knn_scores(index: SessionIndex, batch: np.ndarray, cfg: KnnConfig) -> torch.Tensor:
    """[B, n_items+1] float32 scores of the left-padded (0 = padding) sessions ``batch`` [B, L]."""
    n_rows, V = batch.shape[0], index.n_items + 1
    real = batch > 0
    length = real.sum(1)
    pos_all = np.cumsum(real, 1)
    rows, cols = np.nonzero(real)
    rows, items, pos = _last_occurrences(rows, batch[rows, cols], pos_all[rows, cols])
    r, s, sim, match = neighbours(index, rows, items, pos, length, n_rows, cfg)
    nb, ix = _expand(index.sess_ptr[s], index.sess_ptr[s + 1])
    weight = sim[nb]
    if cfg.lambda_item > 0:
        weight = weight * np.exp(-np.abs(index.sess_pos[ix] - match[nb]) / cfg.lambda_item)
    item = index.sess_items[ix]
    if cfg.idf:
        weight = weight * index.idf[item]
    # accumulated sparse into a dense float32 matrix: two passes over B x V instead of several
    out = torch.zeros(n_rows * V).index_add_(0, torch.from_numpy(r[nb] * V + item),
                                             torch.from_numpy(weight.astype(np.float32))).view(n_rows, V)
    top = out.max(1, keepdim=True).values
    return out.div_(torch.where(top > 0, top, 1.0)).add_(1e-6 * torch.from_numpy(index.popularity).float())


def knn_scorer(train: list[np.ndarray], n_items: int, cfg: KnnConfig):
    """A Scorer (serving/offline/evaluate.py) over the training sessions ``train``."""
    index = fit_index(train, n_items)

    def score(items: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        return knn_scores(index, items.numpy(), cfg)

    score.max_len = 200  # type: ignore[attr-defined]  # the whole prefix (the longest test prefix has 40 items)
    return score


# ----------------------------------------------------------------------------- validation grid
def grid(method: str) -> list[KnnConfig]:
    """The small grid each method is tuned on (validation only)."""
    base = TUNED[method]
    if method == "stan":
        return [replace(base, lambda_pos=a, lambda_recency=b, lambda_item=c)
                for a, b, c in itertools.product((1.0, 2.0, 4.0), (0.0, 50_000.0), (0.0, 2.0, 4.0, 8.0))]
    ks, ms = (50, 100, 200), ((250, 500, 1000) if method == "vmis" else (500, 1000))
    idfs = (False,) if method == "sknn" else (False, True)
    return [replace(base, k=k, m=m, idf=i) for k, m, i in itertools.product(ks, ms, idfs)]
