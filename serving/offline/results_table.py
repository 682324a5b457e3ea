"""Markdown rows for docs/results.md: trained models (one per seed) vs the popular and item-kNN
baselines under both protocols, on the test item of the leave-last-out split.

    python -m serving.offline.results_table --model artifacts/wiki \
        --data ../shared/data/sequences/wikipedia.txt --format sasrec
    python -m serving.offline.results_table --model runs/beauty_s0 --model runs/beauty_s1 --model runs/beauty_s2 \
        --data ../shared/data/sequences/amazon-beauty.txt --format sasrec --name Beauty
    python -m serving.offline.results_table --data ../shared/data/sessions/diginetica-srgnn --format sessions

With several models (the same defaults, other seeds) each gets its row, and a row per protocol
gives the mean and the sample standard deviation of every metric over them. ``--format sessions``
(the session benchmark; no --model) gives every baseline's validation and test rows under the
benchmark's protocol, with the papers' P@20 and MRR@20 in percent.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import typer

from serving.model.artifacts import load_config, load_model_dir
from serving.offline.data import load
from serving.offline.evaluate import (
    BASELINES,
    PROTOCOLS,
    SESSIONS,
    baseline_scorer,
    evaluate_scorer,
    evaluate_sessions,
    model_scorer,
)
from serving.offline.sequences import build_vocab_and_split, encode, leave_last_out

COLUMNS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr@20", "coverage@10", "users")
SESSION_COLUMNS = ("p@20_pct", "mrr@20_pct", "hr@10", "ndcg@10", "coverage@10", "users", "seconds")
Row = tuple[str, str, dict, str]  # (model label, protocol, metrics, training)


def model_rows(model: Path, sessions: list, seed: int) -> list[Row]:
    """The model's test metrics under every protocol, with what its training took."""
    net, vocab = load_model_dir(model)
    split = leave_last_out(encode(sessions, vocab), vocab.n_items)
    training = load_config(model).get("training", {})
    res = evaluate_scorer(model_scorer(net), split.test, vocab.n_items, seed=seed)
    label = f"SessionTransformer, seed {training.get('seed', '?')}"
    spent = (f"{training.get('train_seconds', '?')} s on {training.get('device', '?')}, best epoch "
             f"{training.get('best_epoch', '?')} of {training.get('epochs_run', '?')}")
    return [(label, p, res[p], spent) for p in PROTOCOLS]


def mean_rows(rows: list[Row]) -> list[Row]:
    """Per protocol, 'mean ± sd' of each metric over the rows (one per seed)."""
    out = []
    for protocol in PROTOCOLS:
        runs = [r for _, p, r, _ in rows if p == protocol]
        cells = {c: f"{statistics.mean(r[c] for r in runs):.4f} ± {statistics.stdev(r[c] for r in runs):.4f}"
                 for c in COLUMNS if c != "users"} | {"users": runs[0]["users"]}
        out.append((f"SessionTransformer, mean ± sd of {len(runs)} seeds", protocol, cells, "as above"))
    return out


def cell(metrics: dict, column: str) -> str:
    value = metrics[column]
    return value if isinstance(value, str) else str(value) if column in ("users", "seconds") else f"{value:.4f}"


cli = typer.Typer(add_completion=False)


@cli.command()
def main(model: list[Path] = typer.Option(None, help="a trained model directory; repeat for more seeds"),
         data: Path = typer.Option(None), data_format: str = typer.Option("sasrec", "--format"),
         name: str = typer.Option(None, help="dataset name in the table"), seed: int = typer.Option(0),
         sessions: int = typer.Option(20_000), data_seed: int = typer.Option(0),
         json_path: Path = typer.Option(None)) -> None:
    if data_format == SESSIONS:
        session_table(data, name or data.name, seed, json_path)
        return
    if not model:
        raise typer.BadParameter("give --model (or --format sessions)")
    sess = load(data_format, data, sessions=sessions, seed=data_seed)
    name = name or (data.name if data else data_format)
    rows = [row for m in model for row in model_rows(m, sess, seed)]
    if len(model) > 1:
        rows += mean_rows(rows)
    v2, _, sp2 = build_vocab_and_split(sess)
    for b in ("popular", "itemknn"):
        res = evaluate_scorer(baseline_scorer(b, sp2, v2.n_items), sp2.test, v2.n_items, seed=seed)
        rows += [(b, p, res[p], "none") for p in PROTOCOLS]
    print(f"| dataset | model | protocol | {' | '.join(COLUMNS)} | training |")
    print("|" + "---|" * (4 + len(COLUMNS)))
    for label, p, r, spent in sorted(rows, key=lambda x: PROTOCOLS.index(x[1])):
        print(f"| {name} | {label} | {p} | {' | '.join(cell(r, c) for c in COLUMNS)} | {spent} |")
    if json_path:
        records = [{"dataset": name, "model": label, "protocol": p, "training": spent, **r}
                   for label, p, r, spent in rows]
        json_path.write_text(json.dumps(records, indent=1))


def session_table(data: Path, name: str, seed: int, json_path: Path | None) -> None:
    """Every baseline on the session benchmark, validation then test (the validation-tuned values)."""
    rows = [evaluate_sessions(b, data, split, seed=seed) for b in BASELINES for split in ("valid", "test")]
    print(f"| dataset | model | split | {' | '.join(SESSION_COLUMNS)} |")
    print("|" + "---|" * (3 + len(SESSION_COLUMNS)))
    for r in rows:
        print(f"| {name} | {r['model']} | {r['split']} | {' | '.join(cell(r, c) for c in SESSION_COLUMNS)} |")
    if json_path:
        json_path.write_text(json.dumps([{"dataset": name, **r} for r in rows], indent=1))


if __name__ == "__main__":
    cli()
