"""Train a SessionTransformer (SASRec-style, full-softmax cross-entropy).

    python -m serving.offline.train --data ../shared/data/sequences/wikipedia.txt --format sasrec --out artifacts/wiki
    python -m serving.offline.train --format diginetica --out artifacts/digi            # ../shared/data/diginetica
    python -m serving.offline.train --format synthetic --sessions 20000 --out artifacts/syn --export model_repo

Objective: at every position of every training window, cross-entropy of the next item over
the whole catalogue (softmax over all items, logits = hidden . item embedding). Published
evidence (Klenitskiy & Vasilev, RecSys 2023; Petrov & Macdonald, gSASRec 2023) is that this
beats the original SASRec binary loss with one sampled negative by a wide margin, and it
converges in far fewer epochs. Logits are only computed at non-padded positions, so an epoch
costs ~ (#training interactions x catalogue x d), not (#users x max_len x catalogue x d).

Split: leave-last-out (see serving/offline/sequences.py). Model selection / early stopping: NDCG@10
on the validation item under the sampled100 protocol (fixed seeded negatives, so the curve
is not noisy across epochs; computed on at most --val-users users); full-ranking NDCG@10 is
logged alongside. After --lr-patience epochs without improvement the learning rate is halved
(again every --lr-patience epochs); after --patience epochs without improvement, or when
--max-minutes of training have passed, training stops. The best epoch's weights are written to --out, then evaluated on the test
item under both protocols (recorded in config.json["training"]).
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import typer

from serving.model.artifacts import save_model_dir
from serving.model.transformer import ModelConfig, SessionTransformer
from serving.offline.data import describe, load
from serving.offline.evaluate import evaluate_scorer, model_scorer
from serving.offline.sequences import build_vocab_and_split, training_windows

# Defaults (see RESULTS.md for the runs behind them).
DEFAULTS = dict(d_model=64, n_layers=2, n_heads=2, dropout=0.3, max_len=50, batch_size=128, lr=2e-3,
                weight_decay=0.0, epochs=200, max_minutes=25.0, patience=8, lr_patience=2, window_context=25)


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter("--device cuda but CUDA is not available")
    return torch.device(device)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if deterministic and torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(False)  # cuDNN attention backward is not deterministic
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def make_batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator, pool: int = 64) -> list[torch.Tensor]:
    """Shuffled batches of similar-length windows: shuffle, sort by length inside pools of
    ``pool`` batches, cut into batches, shuffle the batch order. Every window once per epoch;
    padding (and so the Transformer's cost) shrinks ~5x on short-session data."""
    perm = torch.randperm(len(lengths), generator=gen)
    out = []
    chunk = pool * batch_size
    for start in range(0, len(perm), chunk):
        part = perm[start:start + chunk]
        part = part[torch.sort(lengths[part], stable=True).indices]
        out.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    order = torch.randperm(len(out), generator=gen)
    return [out[i] for i in order]


def ce_loss(model: SessionTransformer, items: torch.Tensor, types: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean full-softmax cross-entropy of the next item over every non-padded position
    (with the copy head: NLL of the generate/copy mixture)."""
    return model.loss(items, types, targets)


def train_model(
    sessions,
    out: Path | None,
    *,
    d_model: int = DEFAULTS["d_model"],
    n_layers: int = DEFAULTS["n_layers"],
    n_heads: int = DEFAULTS["n_heads"],
    dropout: float = DEFAULTS["dropout"],
    max_len: int = DEFAULTS["max_len"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    weight_decay: float = DEFAULTS["weight_decay"],
    epochs: int = DEFAULTS["epochs"],
    max_minutes: float = DEFAULTS["max_minutes"],
    patience: int = DEFAULTS["patience"],
    lr_patience: int = DEFAULTS["lr_patience"],
    use_categories: bool = True,
    copy_head: bool = True,
    all_windows: bool = True,
    window_context: int = DEFAULTS["window_context"],
    val_users: int = 10_000,
    device: str = "auto",
    seed: int = 0,
    threads: int | None = None,
    progress: bool = True,
    test_eval: bool = True,
    log=None,
    meta: dict | None = None,
) -> dict:
    """Train, keep the best validation epoch, save to ``out`` (if given); returns a summary dict
    (with the model under key "model" and the vocab under "vocab")."""
    log = log or (lambda msg: print(msg, flush=True))
    seed_everything(seed)
    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    t_start = time.time()

    vocab, _, split = build_vocab_and_split(sessions)
    n_cat = vocab.n_categories if use_categories else 0
    cfg = ModelConfig(n_items=vocab.n_items, n_categories=n_cat, max_len=max_len, d_model=d_model,
                      n_layers=n_layers, n_heads=n_heads, dropout=dropout, copy_head=copy_head)
    model = SessionTransformer(cfg)
    if n_cat:
        model.item_category.copy_(vocab.category_of_index())
    model.to(dev)

    inp, typ, tgt = training_windows(split.train, max_len, all_windows, window_context)
    n_windows, n_targets = len(inp), int((tgt > 0).sum())
    if n_windows == 0:
        raise ValueError("no training sequence has 2 or more interactions")
    inp_t, typ_t, tgt_t = (torch.from_numpy(a) for a in (inp, typ, tgt))
    lengths = torch.from_numpy((inp > 0).sum(1))

    val = split.valid
    if len(val) > val_users:
        val = val.subset(sorted(np.random.default_rng(seed).choice(len(val), val_users, replace=False).tolist()))

    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    use_bf16 = dev.type == "cuda"
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    gen = torch.Generator().manual_seed(seed)
    log(f"data: {describe(sessions)} | catalogue {vocab.n_items} items, {vocab.n_categories} categories | "
        f"train windows {n_windows}, targets {n_targets}, eval users {len(split.test)} | device {dev}")

    best = {"score": -1.0, "epoch": 0, "state": None, "val": None}
    history = []
    budget_s = max_minutes * 60 if max_minutes and max_minutes > 0 else math.inf
    stop_reason = "epochs"
    steps_per_epoch = math.ceil(n_windows / batch_size)
    with _progress(progress) as bar:
        task = bar.add_task("train", total=steps_per_epoch, loss=0.0) if bar else None
        for epoch in range(1, epochs + 1):
            model.train()
            t_ep = time.time()
            batches = make_batches(lengths, batch_size, gen)
            total, seen = 0.0, 0
            out_of_time = False
            if bar:
                bar.reset(task, total=len(batches), description=f"epoch {epoch}")
            for idx in batches:
                L = int(lengths[idx].max())
                x, ty, y = inp_t[idx, -L:].to(dev), typ_t[idx, -L:].to(dev), tgt_t[idx, -L:].to(dev)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                    loss = ce_loss(model, x, ty, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
                if bar:
                    bar.update(task, advance=1, loss=total / seen)
                if time.time() - t_start > budget_s:
                    out_of_time = True
                    break
            train_s = time.time() - t_ep
            res = evaluate_scorer(model_scorer(model, dev), val, vocab.n_items, seed=seed)
            score = res["sampled100"]["ndcg@10"]
            row = {"epoch": epoch, "loss": round(total / max(seen, 1), 4), "train_s": round(train_s, 1),
                   "val_ndcg@10_sampled100": round(score, 4), "val_hr@10_sampled100": round(res["sampled100"]["hr@10"], 4),
                   "val_ndcg@10_full": round(res["full"]["ndcg@10"], 4), "val_hr@10_full": round(res["full"]["hr@10"], 4),
                   "lr": opt.param_groups[0]["lr"], "elapsed_s": round(time.time() - t_start, 1)}
            history.append(row)
            improved = score >= best["score"]  # ties: keep the later (longer-trained) epoch
            if improved:
                best = {"score": score, "epoch": epoch, "state": copy.deepcopy(model.state_dict()), "val": row}
            log(json.dumps(row) + ("  *" if improved else ""))
            if not improved and lr_patience > 0 and (epoch - best["epoch"]) % lr_patience == 0:
                for group in opt.param_groups:  # plateau: halve the learning rate
                    group["lr"] *= 0.5
            if out_of_time:
                stop_reason = f"time budget {max_minutes} min"
                break
            if epoch - best["epoch"] >= patience:
                stop_reason = f"early stop (patience {patience})"
                break
    model.load_state_dict(best["state"])
    train_seconds = time.time() - t_start

    summary = {"epochs_run": len(history), "best_epoch": best["epoch"], "stop": stop_reason,
               "train_seconds": round(train_seconds, 1), "device": str(dev),
               "val": best["val"], "history": history, "seed": seed,
               "hyperparameters": dict(batch_size=batch_size, lr=lr, weight_decay=weight_decay, epochs=epochs,
                                       max_minutes=max_minutes, patience=patience, lr_patience=lr_patience, all_windows=all_windows,
                                       window_context=window_context,
                                       use_categories=use_categories),
               "data": describe(sessions) | (meta or {})}
    if test_eval:
        res = evaluate_scorer(model_scorer(model, dev), split.test, vocab.n_items, seed=seed)
        summary["test"] = {p: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for p, r in res.items()}
    model.to("cpu").eval()
    if out is not None:
        save_model_dir(out, model, vocab, summary)
    summary["model"], summary["vocab"] = model, vocab
    return summary


def _progress(enabled: bool):
    if not enabled:
        import contextlib

        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), transient=True)


app = typer.Typer(add_completion=False, help="Train a SessionTransformer (full-softmax CE, SASRec split).")


@app.command()
def main(
    data: Path = typer.Option(None, help="dataset file (sasrec) or directory (diginetica); omit for synthetic"),
    format: str = typer.Option("sasrec", "--format", help="sasrec | diginetica | synthetic"),
    out: Path = typer.Option(..., help="output model directory"),
    epochs: int = typer.Option(DEFAULTS["epochs"]),
    max_minutes: float = typer.Option(DEFAULTS["max_minutes"], help="wall-clock budget for training (<=0: none)"),
    patience: int = typer.Option(DEFAULTS["patience"], help="epochs without validation improvement before stopping"),
    lr_patience: int = typer.Option(DEFAULTS["lr_patience"], help="halve the learning rate after this many epochs without improvement (0: never)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    seed: int = typer.Option(0),
    export: Path = typer.Option(None, help="model repository to export the trained model into (e.g. model_repo)"),
    sessions: int = typer.Option(20_000, help="synthetic only: number of sessions to generate"),
    data_seed: int = typer.Option(0, help="synthetic only: generator seed"),
    d_model: int = typer.Option(DEFAULTS["d_model"]),
    n_layers: int = typer.Option(DEFAULTS["n_layers"]),
    n_heads: int = typer.Option(DEFAULTS["n_heads"]),
    dropout: float = typer.Option(DEFAULTS["dropout"]),
    max_len: int = typer.Option(DEFAULTS["max_len"]),
    batch_size: int = typer.Option(DEFAULTS["batch_size"]),
    lr: float = typer.Option(DEFAULTS["lr"]),
    weight_decay: float = typer.Option(DEFAULTS["weight_decay"]),
    categories: bool = typer.Option(True, "--categories/--no-categories", help="use a category embedding when the data has categories"),
    copy_head: bool = typer.Option(True, "--copy-head/--no-copy-head", help="gated pointer over the session's items (serving/model/transformer.py)"),
    all_windows: bool = typer.Option(True, "--all-windows/--last-window", help="train on every max_len window of long histories"),
    window_context: int = typer.Option(DEFAULTS["window_context"], help="history items each earlier window carries into the next (targets trained once)"),
    val_users: int = typer.Option(10_000, help="validation users per epoch (seeded subset)"),
    threads: int = typer.Option(0, help="torch CPU threads (0: torch default)"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    sess = load(format, data, sessions=sessions, seed=data_seed)
    s = train_model(sess, out, d_model=d_model, n_layers=n_layers, n_heads=n_heads, dropout=dropout, max_len=max_len,
                    batch_size=batch_size, lr=lr, weight_decay=weight_decay, epochs=epochs, max_minutes=max_minutes,
                    patience=patience, lr_patience=lr_patience, use_categories=categories, copy_head=copy_head, all_windows=all_windows, window_context=window_context, val_users=val_users,
                    device=device, seed=seed, threads=threads or None, progress=progress,
                    meta={"format": format, "path": str(data) if data else None})
    version = None
    if export is not None:
        from serving.online.export import export_model  # written by the serving/export owner

        version = export_model(out, export, model_name="session_transformer")
    t = s.get("test", {})
    sm, fu = t.get("sampled100", {}), t.get("full", {})
    print(f"done: {out} | best epoch {s['best_epoch']}/{s['epochs_run']} ({s['stop']}) in {s['train_seconds']:.0f}s on {s['device']} | "
          f"test sampled100 HR@10 {sm.get('hr@10', float('nan')):.4f} NDCG@10 {sm.get('ndcg@10', float('nan')):.4f} | "
          f"full HR@10 {fu.get('hr@10', float('nan')):.4f} NDCG@10 {fu.get('ndcg@10', float('nan')):.4f}"
          + (f" | exported version {version} to {export}" if version is not None else ""))


if __name__ == "__main__":
    app()
