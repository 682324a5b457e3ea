"""Offline evaluation: the SASRec protocols, the model and two baselines.

    python -m serving.offline.evaluate --model DIR --data PATH --format sasrec --protocol sampled100
    python -m serving.offline.evaluate --data PATH --format sasrec --protocol full --baseline itemknn

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

Ties are broken uniformly at random (seeded), so a constant scorer scores at chance level.
``coverage@10`` is always computed from the full (history-masked) top-10 lists: the fraction
of the catalogue that appears in at least one user's top 10.

Baselines (fit on the training part of the split only):

* ``popular`` -- training counts.
* ``itemknn`` -- item-item cosine similarity of co-occurrence within a sliding window of
  ``window`` positions in training sequences, cos(i, j) = c(i, j) / sqrt(c(i) c(j)),
  cos(i, i) = 1; a session is scored by sum_r decay^r cos(h_r, j) over its ``n_recent`` most
  recent items (r = 0 is the latest), plus a 1e-6 x popularity tie-breaker.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import typer

from serving.offline import ranking_metrics as metrics
from serving.offline.sequences import EvalSet, Split, pad_left, sample_negatives

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (items [B,L], types [B,L]) -> [B, n_items+1]
PROTOCOLS = ("sampled100", "full", "served")


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


# ----------------------------------------------------------------------------- core
def evaluate_scorer(score: Scorer, ev: EvalSet, n_items: int, seed: int = 0, batch_size: int = 256,
                    protocols=PROTOCOLS, max_len: int | None = None) -> dict[str, dict]:
    """Metrics of ``score`` on ``ev`` for each protocol (coverage from the full ranking)."""
    limit = max_len if max_len else int(getattr(score, "max_len", 50))
    n = len(ev)
    negatives = sample_negatives(ev.rated, n_items, 100, seed) if "sampled100" in protocols else None
    # one tie-break stream per protocol: a protocol's numbers do not depend on which others run
    gens = {p: torch.Generator().manual_seed(seed) for p in PROTOCOLS}
    ranks = {p: np.zeros(n, dtype=np.float64) for p in protocols}
    top10 = np.zeros((n, min(10, n_items)), dtype=np.int64)
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
            r = metrics.target_ranks(s.gather(1, neg), t_score, gens["sampled100"]).double()
            r[~known] = float("inf")
            ranks["sampled100"][sl] = r.numpy()
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
        if "full" in protocols:
            r = metrics.target_ranks(masked, t_score, gens["full"], exclude_target=tgt).double()
            r[~known] = float("inf")
            ranks["full"][sl] = r.numpy()
        # coverage: top-10 with the whole history masked (the target is not special here)
        cov = s.scatter(1, full_hist, float("-inf"))
        cov[:, 0] = float("-inf")
        top = cov.topk(top10.shape[1], dim=1)
        top10[sl] = top.indices.masked_fill(torch.isinf(top.values), 0).numpy()  # masked items are no recommendation
    out = {}
    for p in protocols:
        out[p] = metrics.summarize(ranks[p], top10, n_items)
    return out


def baseline_scorer(name: str, split: Split, n_items: int) -> Scorer:
    if name == "popular":
        return popular_scorer(split.train_counts)
    if name == "itemknn":
        return itemknn_scorer([u.items for u in split.train], split.train_counts, n_items)
    raise ValueError(f"unknown baseline {name!r} (popular | itemknn)")


# ----------------------------------------------------------------------------- CLI
cli = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])


@cli.command()
def main(
    model: Path = typer.Option(None, help="trained model directory (serving.offline.train --out)"),
    data: Path = typer.Option(None,
                              help="dataset file/dir (omit for synthetic; diginetica defaults to ../shared/data)"),
    data_format: str = typer.Option("sasrec", "--format", help="sasrec | diginetica | synthetic"),
    protocol: str = typer.Option("sampled100", help="sampled100 | full"),
    baseline: str = typer.Option(None, help="popular | itemknn (then --model is not needed)"),
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

    if protocol not in PROTOCOLS:
        raise typer.BadParameter(f"protocol must be one of {PROTOCOLS}")
    if model is None and baseline is None:
        raise typer.BadParameter("give --model DIR or --baseline popular|itemknn")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()
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
    res = evaluate_scorer(scorer, ev, vocab.n_items, seed=seed, protocols=(protocol,))[protocol]
    res = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}
    res |= {"model": name, "protocol": protocol, "split": split, "seconds": round(time.time() - t0, 1)}
    if json_out:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>12}: {v}")


if __name__ == "__main__":
    cli()
