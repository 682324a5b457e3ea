"""The validation grid that tunes the session-kNN baselines (serving/offline/session_knn.py):
every grid point scored on validation only, per method the best by MRR@20.

    python -m serving.offline.session_knn_grid --data ../shared/data/sessions/diginetica-srgnn --out grid.json
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import typer

from serving.offline.data import load_session_benchmark
from serving.offline.evaluate import evaluate_scorer
from serving.offline.sequences import Split, session_split
from serving.offline.session_knn import TUNED, KnnConfig, grid, knn_scorer


def evaluate_config(split: Split, n_items: int, cfg: KnnConfig, on: str = "valid", seed: int = 0) -> dict:
    """The sessions-protocol metrics of ``cfg`` on validation (fit on the earlier sessions) or on
    the test file (fit on every training session), with the seconds fitting and scoring took."""
    t0 = time.time()
    fit = split.train if on == "valid" else split.refit
    scorer = knn_scorer([u.items for u in fit], n_items, cfg)
    res = evaluate_scorer(scorer, split.valid if on == "valid" else split.test, n_items, seed=seed,
                          batch_size=64, protocols=("sessions",))["sessions"]
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()} | {
        "seconds": round(time.time() - t0, 1)}


def run_grid(split: Split, n_items: int, methods: list[str], log=print) -> dict:
    """Every grid point on validation; per method the best by validation MRR@20 (P@20 breaks ties)."""
    out: dict = {}
    for method in methods:
        rows = []
        for cfg in grid(method):
            res = evaluate_config(split, n_items, cfg)
            rows.append({"config": asdict(cfg), "valid": res})
            log(json.dumps({"method": method, **rows[-1]}))
        best = max(rows, key=lambda r: (r["valid"]["mrr@20_pct"], r["valid"]["p@20_pct"]))
        out[method] = {"grid": rows, "chosen": best["config"], "valid": best["valid"],
                       "grid_seconds": round(sum(r["valid"]["seconds"] for r in rows), 1)}
    return out


cli = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])


@cli.command()
def main(data: Path = typer.Option(..., help="benchmark directory with train.txt and test.txt"),
         method: list[str] = typer.Option(list(TUNED), help="sknn | vsknn | stan | vmis (repeat)"),
         out: Path = typer.Option(None, help="write the grid and the chosen values here (JSON)"),
         valid_fraction: float = typer.Option(0.1, help="the last share of training sessions used for validation"),
         valid_cases: int = typer.Option(15_000, help="seeded sample of validation cases the grid is scored on "
                                                      "(0: all; CPU is the limit)"),
         seed: int = typer.Option(0)) -> None:
    torch.set_num_threads(1)
    train, test = load_session_benchmark(data)
    n_items = int(max(max(s.max() for s in train), max(s.max() for s in test)))
    split = session_split(train, test, n_items, valid_fraction)
    if 0 < valid_cases < len(split.valid):
        pick = np.random.default_rng(seed).choice(len(split.valid), valid_cases, replace=False)
        split = replace(split, valid=split.valid.subset(np.sort(pick)))
    result = run_grid(split, n_items, method)
    if out:
        out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    cli()
