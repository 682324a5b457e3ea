"""Offline evaluation: the SASRec protocols, the session benchmark's, the model and the baselines.

    python -m serving.offline.evaluate --model DIR --data PATH --format sasrec --protocol sampled100
    python -m serving.offline.evaluate --data PATH --format sasrec --protocol full --baseline itemknn
    python -m serving.offline.evaluate --model DIR --format diginetica --protocol served --diversity 0.3
    python -m serving.offline.evaluate --format sessions --data ../shared/data/sessions/diginetica-srgnn \
        --baseline vsknn --split test
    python -m serving.offline.evaluate --format sessions --data ../shared/data/sessions/diginetica-srgnn \
        --model DIR --protocol served

Protocols (split: leave-last-out, users with >= 3 interactions; see serving/offline/sequences.py):

* ``sampled100`` -- exactly SASRec (Kang & McAuley 2018): per user the test target (last item)
  is ranked against 100 negatives drawn uniformly (seeded, with replacement, as in the
  reference code) from items the user never interacted with; the input is the whole history
  before the target, validation item included. All users are evaluated (the reference code
  subsamples 10,000 users when there are more; the expectation is the same).
* ``full`` -- the target is ranked against the whole catalogue. The user's earlier items are
  masked out, except the target itself when it is a repeat (standard "mask history but not
  the target"), so repeat-consumption targets stay rankable.
* ``served`` -- what the worker serves: the whole catalogue except the current item (the last
  one of the history, on screen when the recommendation is shown; stream/pipeline.py never
  recommends it). Earlier items stay rankable. A target equal to the current item is a miss.
* ``sessions`` -- the session benchmark's (SR-GNN, GCE-GNN; ``--format sessions``, split in
  serving/offline/sequences.py ``session_split``): every item is ranked, history NOT removed. It
  adds the papers' P@20 (= HR@20) and MRR@20 in percent as ``p@20_pct`` and ``mrr@20_pct``. With
  this format a baseline is fit on the sessions before the validation ones for ``--split valid``
  and on every training session for ``--split test``.

Ties are broken uniformly at random (seeded), so a constant scorer scores at chance level.
``coverage@10`` is always computed from the full (history-masked) top-10 lists: the fraction
of the catalogue that appears in at least one user's top 10. The exposure figures come from the
same lists (serving/offline/exposure.py): ``gini@10`` (Gini of item exposure over every catalogue
item, zeros included), ``long_tail@10`` (share of slots going to items outside the top 20% by
training popularity), ``category_diversity@10`` (intra-list share of item pairs of different
categories) and ``novelty@10`` (mean -log2 of the add-one-smoothed training popularity).

``--diversity λ`` (default 0) re-ranks every list before the metrics with the same MMR rule the
worker applies with ``RECO_DIVERSITY`` (serving/model/rerank.py): each protocol's top 50
candidates (the worker gets 50 from Triton) are re-ordered, the target's rank is its position in
the re-ranked pool, and the top-10 lists are the re-ranked pools' first 10. The scorer runs once
(``score_eval_set``); ``summarize_scored`` re-ranks and measures, so many λ cost one scoring.

Baselines (fit on the training part of the split only):

* ``popular`` -- training counts.
* ``itemknn`` -- item-item cosine similarity of co-occurrence within a sliding window of
  ``window`` positions in training sequences, cos(i, j) = c(i, j) / sqrt(c(i) c(j)),
  cos(i, i) = 1; a session is scored by sum_r decay^r cos(h_r, j) over its ``n_recent`` most
  recent items (r = 0 is the latest), plus a 1e-6 x popularity tie-breaker.
* ``sknn``, ``vsknn``, ``stan``, ``vmis`` -- the session-kNN family at the values tuned on the
  session benchmark's validation split (serving/offline/session_knn.py).
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import typer

from serving.model.rerank import mmr_order_batch
from serving.offline import exposure
from serving.offline import ranking_metrics as metrics
from serving.offline.sequences import Encoded, EvalSet, Split, item_counts, pad_left, sample_negatives
from serving.offline.session_knn import TUNED, knn_scorer

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (items [B,L], types [B,L]) -> [B, n_items+1]
PROTOCOLS = ("sampled100", "full", "served")  # leave-last-out (the default set)
SESSIONS = "sessions"  # the session benchmark's
ALL_PROTOCOLS = PROTOCOLS + (SESSIONS,)


# ----------------------------------------------------------------------------- scorers
def model_scorer(model, device: str | torch.device = "cpu") -> Scorer:
    model.eval()
    use_bf16 = torch.device(device).type == "cuda"

    @torch.no_grad()
    def score(items: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        items, types = items.to(device), types.to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
            return model.score_last(items, types).float().cpu()

    score.max_len = model.cfg.max_len  # type: ignore[attr-defined]
    return score


def popular_scorer(train_counts: np.ndarray) -> Scorer:
    pop = torch.as_tensor(train_counts, dtype=torch.float32).clone()
    pop[0] = float("-inf")

    def score(items: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        return pop.unsqueeze(0).expand(items.shape[0], -1).clone()

    score.max_len = 1  # type: ignore[attr-defined]
    return score


def itemknn_similarity(train_seqs: list[np.ndarray], n_items: int, window: int = 10) -> torch.Tensor:
    """Sparse [n_items+1, n_items+1] cosine similarity of windowed co-occurrence (diagonal = 1)."""
    V = n_items + 1
    codes = []
    for s in train_seqs:
        s = np.asarray(s)
        for d in range(1, min(window, len(s) - 1) + 1):
            a, b = s[:-d], s[d:]
            keep = (a != b) & (a > 0) & (b > 0)
            if keep.any():
                codes.append(a[keep] * V + b[keep])
                codes.append(b[keep] * V + a[keep])
    counts = np.zeros(V, dtype=np.float64)
    for s in train_seqs:
        np.add.at(counts, np.asarray(s), 1)
    counts[0] = 0
    if codes:
        uniq, c = np.unique(np.concatenate(codes), return_counts=True)
        rows, cols = uniq // V, uniq % V
        vals = c / np.sqrt(np.maximum(counts[rows], 1) * np.maximum(counts[cols], 1))
    else:
        rows = cols = np.zeros(0, dtype=np.int64)
        vals = np.zeros(0)
    diag = np.arange(1, V)
    rows = np.concatenate([rows, diag])
    cols = np.concatenate([cols, diag])
    vals = np.concatenate([vals, np.ones(V - 1)])
    idx = torch.from_numpy(np.stack([rows, cols]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR is beta" / invariant-check notices
        return torch.sparse_coo_tensor(idx, torch.from_numpy(vals).float(), (V, V)).coalesce().to_sparse_csr()


def itemknn_scorer(train_seqs: list[np.ndarray], train_counts: np.ndarray, n_items: int, window: int = 10,
                   n_recent: int = 5, decay: float = 0.7) -> Scorer:
    sim = itemknn_similarity(train_seqs, n_items, window)
    pop = torch.as_tensor(train_counts, dtype=torch.float32)
    pop = 1e-6 * pop / max(float(pop.max()), 1.0)
    weights = decay ** torch.arange(n_recent, dtype=torch.float32).flip(0)  # oldest ... latest

    def score(items: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        recent = items[:, -n_recent:]
        w = weights[-recent.shape[1]:].unsqueeze(0) * (recent > 0)
        x = torch.zeros(items.shape[0], n_items + 1)
        x.scatter_add_(1, recent, w)
        x[:, 0] = 0
        s = torch.sparse.mm(sim, x.t()).t() + pop  # sim is symmetric
        s[:, 0] = float("-inf")
        return s

    score.max_len = n_recent  # type: ignore[attr-defined]
    return score


def mixed_scorer(model: Scorer, knn: Scorer, weight: float) -> Scorer:
    """(1 - weight) x the model's next-item probabilities + weight x the kNN scores scaled to sum 1:
    both are then distributions over the catalogue, so ``weight`` is the kNN's share of the mass.
    The model's scores are log-probabilities (copy head) or logits; a softmax gives p either way."""

    def score(items: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        p = model(items, types).float().softmax(-1)
        k = knn(items, types).float().clamp_min(0)
        k[:, 0] = 0
        return (1 - weight) * p + weight * k / k.sum(-1, keepdim=True).clamp_min(1e-12)

    # the kNN reads the whole prefix; the model trims it to its own window
    score.max_len = max(int(getattr(model, "max_len", 50)), int(getattr(knn, "max_len", 50)))  # type: ignore[attr-defined]
    return score


# ----------------------------------------------------------------------------- core
POOL = 50  # candidates kept per list for re-ranking: as many as the worker gets from Triton (N_CANDIDATES)


@dataclass
class Scored:
    """One scoring pass over an EvalSet: per protocol, each user's plain target rank and the top
    ``POOL`` candidates (indices and scores, best first) with the target's column among them (-1
    when it is not there); and the history-masked pool the top-10 lists for coverage and exposure
    come from. Re-ranking works on these, so a scorer is run once for any number of λ."""

    n_items: int
    ranks: dict[str, np.ndarray]
    pools: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # items [U,P], scores [U,P], target column [U]
    lists: tuple[np.ndarray, np.ndarray]  # items [U,P], scores [U,P]


def _pool(scores: torch.Tensor, items: torch.Tensor | None, target: torch.Tensor | None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-POOL of ``scores`` [B, C] as (item indices, scores, column of ``target`` or -1); ``items``
    [B, C] maps columns to item indices (default: column = item index)."""
    top = scores.topk(min(POOL, scores.shape[1]), dim=1)
    idx = top.indices if items is None else items.gather(1, top.indices)
    col = np.full(scores.shape[0], -1, dtype=np.int64)
    if target is not None:
        hit = idx == target.view(-1, 1)
        found = hit.any(1)
        col[found.numpy()] = hit.float().argmax(1)[found].numpy()
    return idx.numpy(), top.values.numpy(), col


def pooled_ranks(scores: torch.Tensor, top: torch.Tensor, t_score: torch.Tensor, gen: torch.Generator,
                 tgt: torch.Tensor) -> torch.Tensor:
    """Target ranks from each row's top-POOL scores ``top`` (best first): exact when the target
    scores above the pool's last value (every tie is then in the pool) or ties it (ranked on the
    whole row), else POOL, a lower bound (POOL items score higher), which every metric up to @20
    counts as the miss it is. Saves two passes over the catalogue per row."""
    ranks = torch.full(t_score.shape, POOL, dtype=torch.long)
    inside = t_score > top[:, -1]
    ranks[inside] = metrics.target_ranks(top[inside], t_score[inside], gen, exclude_target=tgt[inside])
    edge = t_score == top[:, -1]
    if edge.any():
        ranks[edge] = metrics.target_ranks(scores[edge], t_score[edge], gen, exclude_target=tgt[edge])
    return ranks


def score_eval_set(score: Scorer, ev: EvalSet, n_items: int, seed: int = 0, batch_size: int = 256,
                   protocols=PROTOCOLS, max_len: int | None = None) -> Scored:
    """Runs ``score`` over ``ev`` once: plain ranks per protocol and the candidate pools."""
    limit = max_len if max_len else int(getattr(score, "max_len", 50))
    n = len(ev)
    negatives = sample_negatives(ev.rated, n_items, 100, seed) if "sampled100" in protocols else None
    # one tie-break stream per protocol: a protocol's numbers do not depend on which others run
    gens = {p: torch.Generator().manual_seed(seed) for p in ALL_PROTOCOLS}
    ranks = {p: np.zeros(n, dtype=np.float64) for p in protocols}
    pool_w = min(POOL, n_items + 1)
    pools = {p: (np.zeros((n, min(POOL, 101) if p == "sampled100" else pool_w), dtype=np.int64),
                 np.zeros((n, min(POOL, 101) if p == "sampled100" else pool_w), dtype=np.float32),
                 np.full(n, -1, dtype=np.int64)) for p in protocols}
    lists = (np.zeros((n, pool_w), dtype=np.int64), np.zeros((n, pool_w), dtype=np.float32))

    def keep(dest: tuple[np.ndarray, ...], sl: slice, got: tuple[np.ndarray, ...]) -> None:
        for d, g in zip(dest, got):
            d[sl] = g

    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        hist = ev.items[sl]
        L = max(1, min(limit, max(len(h) for h in hist)))
        items = torch.from_numpy(pad_left(hist, L))
        types = torch.from_numpy(pad_left(ev.types[sl], L))
        s = score(items, types).float()
        s[:, 0] = float("-inf")
        tgt = torch.tensor(ev.targets[sl], dtype=torch.long)
        known = tgt > 0
        t_score = s.gather(1, tgt.view(-1, 1)).squeeze(1)
        if negatives is not None:
            neg = torch.from_numpy(negatives[sl])
            neg_scores = s.gather(1, neg)
            r = metrics.target_ranks(neg_scores, t_score, gens["sampled100"]).double()
            r[~known] = float("inf")
            ranks["sampled100"][sl] = r.numpy()
            # the pool: the target (column 0) and its 100 negatives
            cand = torch.cat([tgt.view(-1, 1), neg], 1)
            keep(pools["sampled100"], sl, _pool(torch.cat([t_score.view(-1, 1), neg_scores], 1), cand, tgt))
        if SESSIONS in protocols:
            got = _pool(s, None, tgt)
            r = pooled_ranks(s, torch.from_numpy(got[1]), t_score, gens[SESSIONS], tgt).double()
            r[~known] = float("inf")
            ranks[SESSIONS][sl] = r.numpy()
            keep(pools[SESSIONS], sl, got)
            if protocols == (SESSIONS,):  # nothing is masked in this protocol: its lists are the top lists
                keep(lists, sl, got[:2])
                continue
        # full: mask every earlier item of the user, then put the target back
        full_hist = torch.from_numpy(pad_left(hist, max(1, max(len(h) for h in hist))))
        masked = s.scatter(1, full_hist, float("-inf"))
        masked.scatter_(1, tgt.view(-1, 1), t_score.view(-1, 1))
        masked[:, 0] = float("-inf")
        if "served" in protocols:
            current = torch.tensor([int(h[-1]) if len(h) else 0 for h in hist], dtype=torch.long)
            served = s.scatter(1, current.view(-1, 1), float("-inf"))
            served[:, 0] = float("-inf")
            r = metrics.target_ranks(served, t_score, gens["served"], exclude_target=tgt).double()
            r[~known | (tgt == current)] = float("inf")
            ranks["served"][sl] = r.numpy()
            keep(pools["served"], sl, _pool(served, None, tgt))
        if "full" in protocols:
            r = metrics.target_ranks(masked, t_score, gens["full"], exclude_target=tgt).double()
            r[~known] = float("inf")
            ranks["full"][sl] = r.numpy()
            keep(pools["full"], sl, _pool(masked, None, tgt))
        # coverage and exposure: top lists with the whole history masked (the target is not special here)
        cov = s.scatter(1, full_hist, float("-inf"))
        cov[:, 0] = float("-inf")
        keep(lists, sl, _pool(cov, None, None)[:2])
    return Scored(n_items, ranks, pools, lists)


def rerank_order(scores: np.ndarray, items: np.ndarray, diversity: float,
                 item_category: np.ndarray | None) -> np.ndarray:
    """[U, P] column order of each pool after the MMR re-rank (serving/model/rerank.py); identity at 0."""
    if diversity == 0.0 or item_category is None:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return mmr_order_batch(scores, np.asarray(item_category)[items], diversity)


def summarize_scored(sc: Scored, diversity: float = 0.0, item_category: np.ndarray | None = None,
                     train_counts: np.ndarray | None = None) -> dict[str, dict]:
    """Metrics per protocol after re-ranking each pool with ``diversity`` (λ; 0 = as scored).

    After a re-rank the target's rank is its position in the re-ranked pool (a target outside the
    pool keeps its rank, which is at least POOL); the top-10 lists are the re-ranked pool's first 10.
    ``item_category`` [n_items + 1] (0 = unknown) is what the re-rank and the category diversity
    use; ``train_counts`` the training popularity of the long-tail share and the novelty.
    """
    if diversity and item_category is None:
        raise ValueError("re-ranking for diversity needs the items' categories")
    list_items, list_scores = sc.lists
    order = rerank_order(list_scores, list_items, diversity, item_category)[:, :10]
    top10 = np.take_along_axis(list_items, order, 1)
    top10 = np.where(np.isinf(np.take_along_axis(list_scores, order, 1)), 0, top10)  # masked: no recommendation
    expo = exposure.exposure_metrics(top10, sc.n_items, train_counts if train_counts is not None
                                     else np.zeros(sc.n_items + 1), item_category)
    extra = {"gini@10": expo["gini"]}
    if train_counts is not None:
        extra |= {"long_tail@10": expo["long_tail_share"], "novelty@10": expo["novelty"]}
    if "category_diversity" in expo:
        extra["category_diversity@10"] = expo["category_diversity"]
    out = {p: metrics.summarize(reranked_ranks(sc, p, diversity, item_category), top10, sc.n_items) | extra
           for p in sc.ranks}
    if SESSIONS in out:  # the papers' figures, in percent
        out[SESSIONS] |= {"p@20_pct": 100 * out[SESSIONS]["hr@20"], "mrr@20_pct": 100 * out[SESSIONS]["mrr@20"]}
    return out


def reranked_ranks(sc: Scored, protocol: str, diversity: float = 0.0,
                   item_category: np.ndarray | None = None) -> np.ndarray:
    """Each user's 0-based target rank under ``protocol`` after the re-rank (the plain ranks at 0)."""
    plain = sc.ranks[protocol]
    if not diversity:
        return plain
    items, scores, col = sc.pools[protocol]
    pos = np.argmax(rerank_order(scores, items, diversity, item_category) == col[:, None], axis=1)
    ranks = np.where(col >= 0, pos, np.maximum(plain, scores.shape[1])).astype(np.float64)
    ranks[np.isinf(plain)] = np.inf  # an unknown target, or the item on screen, stays a miss
    return ranks


def evaluate_scorer(score: Scorer, ev: EvalSet, n_items: int, seed: int = 0, batch_size: int = 256,
                    protocols=PROTOCOLS, max_len: int | None = None, diversity: float = 0.0,
                    item_category: np.ndarray | None = None, train_counts: np.ndarray | None = None
                    ) -> dict[str, dict]:
    """Metrics of ``score`` on ``ev`` for each protocol (coverage and exposure from the full ranking)."""
    scored = score_eval_set(score, ev, n_items, seed, batch_size, protocols, max_len)
    return summarize_scored(scored, diversity, item_category, train_counts)


BASELINES = ("popular", "itemknn", "sknn", "vsknn", "stan", "vmis")


def baseline_scorer(name: str, split: Split, n_items: int, fit: list[Encoded] | None = None) -> Scorer:
    """``name`` fit on ``fit`` (default: the split's training part)."""
    seqs = [u.items for u in (split.train if fit is None else fit)]
    counts = split.train_counts if fit is None else item_counts(fit, n_items)
    if name == "popular":
        return popular_scorer(counts)
    if name == "itemknn":
        return itemknn_scorer(seqs, counts, n_items)
    if name in TUNED:
        return knn_scorer(seqs, n_items, TUNED[name])
    raise ValueError(f"unknown baseline {name!r} ({' | '.join(BASELINES)})")


# ----------------------------------------------------------------------------- CLI
cli = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])


@cli.command()
def main(
    model: Path = typer.Option(None, help="trained model directory (serving.offline.train --out)"),
    data: Path = typer.Option(None,
                              help="dataset file/dir (omit for synthetic; diginetica defaults to ../shared/data)"),
    data_format: str = typer.Option("sasrec", "--format", help="sasrec | diginetica | synthetic | sessions"),
    protocol: str = typer.Option(None, help="sampled100 | full | served | sessions (default: sampled100, "
                                            "sessions for --format sessions)"),
    baseline: str = typer.Option(None, help=f"{' | '.join(BASELINES)} (then --model is not needed)"),
    diversity: float = typer.Option(0.0, help="λ of the MMR category re-rank applied to every top list before the "
                                              "metrics (serving/model/rerank.py; 0: none, as RECO_DIVERSITY)"),
    json_out: bool = typer.Option(True, "--json/--no-json", help="print one JSON object (default)"),
    seed: int = typer.Option(0, help="seed of the negatives and tie-breaks"),
    sessions: int = typer.Option(20_000, help="synthetic only: number of sessions (as serving.offline.train)"),
    data_seed: int = typer.Option(0, help="synthetic only: generator seed (as serving.offline.train)"),
    split: str = typer.Option("test", help="test | valid"),
    device: str = typer.Option("cpu", help="cpu | cuda | auto"),
) -> None:
    from serving.model.artifacts import load_model_dir
    from serving.offline.data import load
    from serving.offline.sequences import build_vocab_and_split, encode, leave_last_out

    protocol = protocol or (SESSIONS if data_format == SESSIONS else "sampled100")
    if protocol not in ALL_PROTOCOLS:
        raise typer.BadParameter(f"protocol must be one of {ALL_PROTOCOLS}")
    if model is None and baseline is None:
        raise typer.BadParameter(f"give --model DIR or --baseline {'|'.join(BASELINES)}")
    if not 0.0 <= diversity <= 1.0:
        raise typer.BadParameter("--diversity must be within [0, 1]")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()
    if data_format == SESSIONS:
        res = evaluate_sessions(baseline, data, split, protocol, seed, model, device)
        print(json.dumps(res) if json_out else "\n".join(f"{k:>22}: {v}" for k, v in res.items()))
        return
    sess = load(data_format, data, sessions=sessions, seed=data_seed)
    if baseline is not None:
        vocab, _, sp = build_vocab_and_split(sess)
        scorer = baseline_scorer(baseline, sp, vocab.n_items)
        name = baseline
    else:
        net, vocab = load_model_dir(model, device)
        sp = leave_last_out(encode(sess, vocab), vocab.n_items)
        scorer = model_scorer(net, device)
        name = str(model)
    ev = sp.test if split == "test" else sp.valid
    res = evaluate_scorer(scorer, ev, vocab.n_items, seed=seed, protocols=(protocol,), diversity=diversity,
                          item_category=vocab.category_of_index().numpy(), train_counts=sp.train_counts)[protocol]
    res = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}
    res |= {"model": name, "protocol": protocol, "split": split, "diversity": diversity,
            "seconds": round(time.time() - t0, 1)}
    if json_out:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>22}: {v}")


def evaluate_sessions(baseline: str | None, data: Path, split: str = "test", protocol: str = SESSIONS,
                      seed: int = 0, model: Path | None = None, device: str = "cpu") -> dict:
    """One baseline, or the trained ``model``, on the session benchmark in ``data``: a baseline is
    fit on the sessions before the validation ones for ``split="valid"``, on every training
    session for ``"test"``. ``seconds``: reading, fitting and scoring."""
    from serving.model.artifacts import load_model_dir
    from serving.offline.data import load_session_benchmark
    from serving.offline.sequences import session_split

    t0 = time.time()
    train, test = load_session_benchmark(data)
    n_items = int(max(max(s.max() for s in train), max(s.max() for s in test)))
    sp = session_split(train, test, n_items)
    fit = sp.train if split == "valid" else sp.refit
    ev = sp.valid if split == "valid" else sp.test
    if model is not None:
        net, _ = load_model_dir(model, device)
        scorer, name = model_scorer(net, device), str(model)
    else:
        scorer, name = baseline_scorer(str(baseline), sp, n_items, fit), str(baseline)
    res = evaluate_scorer(scorer, ev, n_items, seed=seed, protocols=(protocol,),
                          train_counts=item_counts(fit, n_items))[protocol]
    res = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}
    return res | {"model": name, "protocol": protocol, "split": split, "diversity": 0.0,
                  "seconds": round(time.time() - t0, 1)}


if __name__ == "__main__":
    cli()
