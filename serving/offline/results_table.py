"""Markdown rows for RESULTS.md: a trained model vs the popular and item-kNN baselines under
both protocols, on the test item of the leave-last-out split.

    python -m serving.offline.results_table --model artifacts/wiki \
        --data ../shared/data/sequences/wikipedia.txt --format sasrec
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from serving.model.artifacts import load_config, load_model_dir
from serving.offline.data import load
from serving.offline.evaluate import PROTOCOLS, baseline_scorer, evaluate_scorer, model_scorer
from serving.offline.sequences import build_vocab_and_split, encode, leave_last_out

COLUMNS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr@20", "coverage@10", "users")

cli = typer.Typer(add_completion=False)


@cli.command()
def main(model: Path = typer.Option(...), data: Path = typer.Option(None),
         data_format: str = typer.Option("sasrec", "--format"),
         name: str = typer.Option(None, help="dataset name in the table"), seed: int = typer.Option(0),
         sessions: int = typer.Option(20_000), data_seed: int = typer.Option(0),
         json_path: Path = typer.Option(None)) -> None:
    sess = load(data_format, data, sessions=sessions, seed=data_seed)
    name = name or (data.name if data else data_format)
    rows = []
    net, vocab = load_model_dir(model)
    split = leave_last_out(encode(sess, vocab), vocab.n_items)
    training = load_config(model).get("training", {})
    t0 = time.time()
    res = evaluate_scorer(model_scorer(net), split.test, vocab.n_items, seed=seed)
    label = (f"SessionTransformer (train {training.get('train_seconds', '?')} s, "
             f"best epoch {training.get('best_epoch', '?')})")
    rows += [(label, p, res[p], time.time() - t0) for p in PROTOCOLS]
    v2, _, sp2 = build_vocab_and_split(sess)
    for b in ("popular", "itemknn"):
        t0 = time.time()
        res = evaluate_scorer(baseline_scorer(b, sp2, v2.n_items), sp2.test, v2.n_items, seed=seed)
        rows += [(b, p, res[p], time.time() - t0) for p in PROTOCOLS]
    print(f"| dataset | model | protocol | {' | '.join(COLUMNS)} |")
    print("|" + "---|" * (3 + len(COLUMNS)))
    for label, p, r, _ in sorted(rows, key=lambda x: (PROTOCOLS.index(x[1]),)):
        cells = [str(r[c]) if c == "users" else f"{r[c]:.4f}" for c in COLUMNS]
        print(f"| {name} | {label} | {p} | {' | '.join(cells)} |")
    if json_path:
        records = [{"dataset": name, "model": label, "protocol": p, **r} for label, p, r, _ in rows]
        json_path.write_text(json.dumps(records, indent=1))


if __name__ == "__main__":
    cli()
