"""Train a SessionTransformer (SASRec-style, full-softmax cross-entropy).

    python -m serving.offline.train --data ../shared/data/sequences/wikipedia.txt --format sasrec --out artifacts/wiki
    python -m serving.offline.train --format diginetica --out artifacts/digi            # ../shared/data/diginetica
    python -m serving.offline.train --format synthetic --sessions 20000 --out artifacts/syn
    python -m serving.offline.train --format sessions --data ../shared/data/sessions/diginetica-srgnn \
        --out artifacts/srgnn --mix-with vsknn            # the session benchmark (docs/results.md)
    python -m serving.online.export publish artifacts/syn     # then serve it: a new version in model_repo/

One ``TrainConfig`` holds every setting of a run and its defaults (the architecture's defaults
are ModelConfig's); the CLI builds it and ``train_model(cfg, sessions, out)`` runs it.

Objective: at every position of every training window, cross-entropy of the next item over
the whole catalogue (softmax over all items, logits = hidden . item embedding). Published
evidence (Klenitskiy & Vasilev, RecSys 2023; Petrov & Macdonald, gSASRec 2023) is that this
beats the original SASRec binary loss with one sampled negative by a wide margin, and it
converges in far fewer epochs. Logits are only computed at non-padded positions, so an epoch
costs ~ (#training interactions x catalogue x d), not (#users x max_len x catalogue x d).

Split: leave-last-out (see serving/offline/sequences.py). Model selection / early stopping: NDCG@10
on the validation item under --select-protocol, by default full ranking (the protocol the
product serves; sampled metrics can disagree with it, Krichene and Rendle, KDD 2020), on at
most --val-users users; the other protocol is logged alongside. After --lr-patience epochs
without improvement the learning rate is halved (again every --lr-patience epochs); after
--patience epochs without improvement, or when --max-minutes of training have passed, training
stops. The best epoch's weights then train --refit-epochs more epochs at --refit-lr on every
target but the test items, the validation items included (each user's most recent interaction,
which a model trained for serving learns too). The result is written to --out, then evaluated on
the test item under both protocols (recorded in config.json["training"]).

Session benchmark (``--format sessions``, ``train_session_benchmark``): the files' own split
(sequences.session_split). A training session of n items is one window with n - 1 targets, so
the causal model learns every prefix of it in one pass; the epoch is picked by MRR@20 under
the sessions protocol (every item ranked, history kept) on --val-users validation cases, the
best epoch is then scored on every validation case, optionally mixed with a session-kNN
(--mix-with, weight chosen on validation), refit on every training session and scored on the
test file, all through evaluate.evaluate_scorer as the kNN baselines are.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import typer

from serving.model.artifacts import Vocab, save_model_dir
from serving.model.transformer import ModelConfig, SessionTransformer
from serving.offline.data import Session, describe, load, load_session_benchmark
from serving.offline.evaluate import (
    PROTOCOLS,
    SESSIONS,
    Scorer,
    baseline_scorer,
    evaluate_scorer,
    mixed_scorer,
    model_scorer,
)
from serving.offline.sequences import Encoded, EvalSet, Split, build_vocab_and_split, session_split, training_windows

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, with the one set of defaults (docs/results.md, "Defaults
    and why"). The architecture fields default to ModelConfig's, so those live in one place."""

    # architecture (ModelConfig; the catalogue and category counts come from the data)
    d_model: int = ModelConfig.d_model
    n_layers: int = ModelConfig.n_layers
    n_heads: int = ModelConfig.n_heads
    dropout: float = ModelConfig.dropout
    max_len: int = ModelConfig.max_len
    copy_head: bool = ModelConfig.copy_head
    logit_scale: float = ModelConfig.logit_scale
    use_categories: bool = True  # category embedding when the data has categories
    # optimisation: AdamW (0.9, 0.98), gradient norm clipped at 5
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    # training data
    all_windows: bool = True  # every max_len window of long histories, not only the last
    window_context: int = 25  # history items each earlier window carries into the next
    # schedule and stopping
    epochs: int = 200
    max_minutes: float = 25.0  # wall-clock budget for training (<= 0: none)
    patience: int = 8  # epochs without validation improvement before stopping
    lr_patience: int = 2  # halve the lr after this many epochs without improvement (0: never)
    val_users: int = 10_000  # validation users (session benchmark: cases) per epoch (seeded subset)
    # the validation metric that picks the epoch: NDCG@10 under full | sampled100, or MRR@20 under
    # sessions (the session benchmark's protocol and the metric its kNN baselines were tuned on)
    select_protocol: str = "full"
    # session benchmark: a session-kNN baseline (evaluate.BASELINES) whose scores are mixed with the
    # model's (evaluate.mixed_scorer), its weight chosen on validation from MIX_WEIGHTS; "" none
    mix_with: str = ""
    # after selection: epochs on every target but the test items (the validation items too), at refit_lr
    refit_epochs: int = 5
    refit_lr: float = 5e-4
    test_eval: bool = True  # evaluate the saved model on the test item
    # run
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    threads: int = 0  # torch CPU threads (0: torch default)

    def __post_init__(self) -> None:
        if self.select_protocol not in ("full", "sampled100", SESSIONS):
            raise ValueError(f"select_protocol must be full, sampled100 or sessions, not {self.select_protocol!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Keys that are not fields (the CLI's data options) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def model_config(self, n_items: int, n_categories: int) -> ModelConfig:
        return ModelConfig(n_items=n_items, n_categories=n_categories if self.use_categories else 0,
                           max_len=self.max_len, d_model=self.d_model, n_layers=self.n_layers,
                           n_heads=self.n_heads, dropout=self.dropout, copy_head=self.copy_head,
                           logit_scale=self.logit_scale)

    def with_architecture(self, model: ModelConfig) -> TrainConfig:
        """This config with ``model``'s architecture (a warm start, or a like-for-like retraining)."""
        return replace(self, d_model=model.d_model, n_layers=model.n_layers, n_heads=model.n_heads,
                       dropout=model.dropout, max_len=model.max_len, copy_head=model.copy_head,
                       logit_scale=model.logit_scale,
                       use_categories=model.n_categories > 0)

    def hyperparameters(self) -> dict[str, Any]:
        """The training settings recorded in config.json (the architecture is recorded as ModelConfig)."""
        names = ("batch_size", "lr", "weight_decay", "epochs", "max_minutes", "patience", "lr_patience",
                 "all_windows", "window_context", "use_categories", "select_protocol", "refit_epochs", "refit_lr",
                 "mix_with")
        return {name: getattr(self, name) for name in names}


@dataclass
class TrainSummary:
    """What a run did; JSON-able, written to config.json["training"] of the model directory."""

    epochs_run: int
    best_epoch: int
    stop: str  # why training stopped
    train_seconds: float
    device: str
    val: dict | None  # the best epoch's history row
    history: list[dict]  # one row per epoch: loss, validation metrics, lr, timings
    seed: int
    hyperparameters: dict
    data: dict
    refit: list[dict]  # one row per epoch after selection (cfg.refit_epochs)
    test: dict | None = None  # {protocol: metrics} of the saved model (best epoch, refit); None without test_eval
    popular: dict | None = None  # the same for the popular-items baseline on the same split, the floor to beat
    valid: dict | None = None  # session benchmark: the best epoch on every validation case {protocol: metrics}
    mix: dict | None = None  # session benchmark with mix_with: the weight grid, the chosen weight, its figures
    refit_choice: dict | None = None  # how refit_epochs was chosen (choose_refit_epochs), when it was

    def to_dict(self) -> dict:
        out = asdict(self)
        for name in ("test", "popular", "valid", "mix", "refit_choice"):
            if out[name] is None:
                del out[name]
        return out


@dataclass
class TrainResult:
    summary: TrainSummary
    model: SessionTransformer  # the best epoch's weights, on the CPU, in eval mode
    vocab: Vocab


# ----------------------------------------------------------------------------- setup
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


def build_model(cfg: TrainConfig, vocab: Vocab, device: torch.device) -> SessionTransformer:
    model = SessionTransformer(cfg.model_config(vocab.n_items, vocab.n_categories))
    if model.cfg.n_categories:
        model.item_category.copy_(vocab.category_of_index())
    return model.to(device)


@dataclass
class Windows:
    """Training windows, left-padded [N, max_len] (see sequences.training_windows), and their lengths."""

    items: torch.Tensor
    types: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def build(cls, train: list[Encoded], cfg: TrainConfig) -> Windows:
        items, types, targets = training_windows(train, cfg.max_len, cfg.all_windows, cfg.window_context)
        if len(items) == 0:
            raise ValueError("no training sequence has 2 or more interactions")
        return cls(torch.from_numpy(items), torch.from_numpy(types), torch.from_numpy(targets),
                   torch.from_numpy((items > 0).sum(1)))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_targets(self) -> int:
        return int((self.targets > 0).sum())

    def batch(self, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows ``idx`` trimmed to their longest window (the rest is left padding)."""
        L = int(self.lengths[idx].max())
        return self.items[idx, -L:].to(device), self.types[idx, -L:].to(device), self.targets[idx, -L:].to(device)


def validation_users(valid: EvalSet, n: int, seed: int) -> EvalSet:
    """At most ``n`` validation users, a seeded subset (the same every epoch)."""
    if len(valid) <= n:
        return valid
    return valid.subset(sorted(np.random.default_rng(seed).choice(len(valid), n, replace=False).tolist()))


def make_optimizer(model: SessionTransformer, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)


def make_batches(lengths: torch.Tensor, batch_size: int, gen: torch.Generator, pool: int = 64) -> list[torch.Tensor]:
    """Shuffled batches of similar-length windows: shuffle, sort by length inside pools of
    ``pool`` batches, cut into batches, shuffle the batch order. Every window once per epoch;
    on short-session data most padding (and so most of the Transformer's cost) goes away."""
    perm = torch.randperm(len(lengths), generator=gen)
    out: list[torch.Tensor] = []
    chunk = pool * batch_size
    for start in range(0, len(perm), chunk):
        part = perm[start:start + chunk]
        part = part[torch.sort(lengths[part], stable=True).indices]
        out.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    order = torch.randperm(len(out), generator=gen)
    return [out[i] for i in order]


# ----------------------------------------------------------------------------- one epoch
class _Bar:
    """The rich progress bar of the epoch loop, or nothing."""

    def __init__(self, progress: Any | None, steps_per_epoch: int):
        self.progress = progress
        self.task = progress.add_task("train", total=steps_per_epoch, loss=0.0) if progress else None

    def start(self, epoch: int, steps: int) -> None:
        if self.progress:
            self.progress.reset(self.task, total=steps, description=f"epoch {epoch}")

    def advance(self, loss: float) -> None:
        if self.progress:
            self.progress.update(self.task, advance=1, loss=loss)


def _progress(enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), transient=True)


def train_step(model: SessionTransformer, opt: torch.optim.Optimizer, items: torch.Tensor, types: torch.Tensor,
               targets: torch.Tensor) -> float:
    """One AdamW step on the batch's mean next-item NLL (bf16 autocast on CUDA); returns the loss."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=items.device.type == "cuda"):
        loss = model.loss(items, types, targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    return float(loss.detach())


def train_epoch(model: SessionTransformer, opt: torch.optim.Optimizer, windows: Windows, batches: list[torch.Tensor],
                device: torch.device, out_of_time: Callable[[], bool], bar: _Bar) -> tuple[float, bool]:
    """One pass over ``batches`` -> (mean training loss, whether the time budget ran out mid-epoch)."""
    model.train()
    total, seen = 0.0, 0
    for idx in batches:
        total += train_step(model, opt, *windows.batch(idx, device)) * len(idx)
        seen += len(idx)
        bar.advance(total / seen)
        if out_of_time():
            return total / max(seen, 1), True
    return total / max(seen, 1), False


def validate(model: SessionTransformer, device: torch.device, val: EvalSet, n_items: int,
             seed: int, select_protocol: str) -> tuple[float, dict]:
    """(selection score, the validation columns of the history row): NDCG@10 under ``select_protocol``,
    or MRR@20 under the session benchmark's."""
    if select_protocol == SESSIONS:
        res = evaluate_scorer(model_scorer(model, device), val, n_items, seed=seed, protocols=(SESSIONS,))[SESSIONS]
        return res["mrr@20"], {"val_p@20_pct": round(res["p@20_pct"], 2), "val_mrr@20_pct": round(res["mrr@20_pct"], 2),
                               "val_hr@10": round(res["hr@10"], 4), "val_ndcg@10": round(res["ndcg@10"], 4)}
    res = evaluate_scorer(model_scorer(model, device), val, n_items, seed=seed)
    sampled, full = res["sampled100"], res["full"]
    return res[select_protocol]["ndcg@10"], {
        "val_ndcg@10_sampled100": round(sampled["ndcg@10"], 4), "val_hr@10_sampled100": round(sampled["hr@10"], 4),
        "val_ndcg@10_full": round(full["ndcg@10"], 4), "val_hr@10_full": round(full["hr@10"], 4)}


@dataclass
class Best:
    """The best validation epoch so far and a copy of its weights."""

    score: float = -1.0
    epoch: int = 0
    state: dict | None = None
    row: dict | None = None

    def offer(self, epoch: int, score: float, row: dict, model: SessionTransformer) -> bool:
        if not score >= self.score:  # ties: keep the later (longer-trained) epoch; NaN never wins
            return False
        self.score, self.epoch, self.state, self.row = score, epoch, copy.deepcopy(model.state_dict()), row
        return True


def halve_lr_on_plateau(opt: torch.optim.Optimizer, epochs_since_best: int, lr_patience: int) -> None:
    if lr_patience > 0 and epochs_since_best % lr_patience == 0:
        for group in opt.param_groups:
            group["lr"] *= 0.5


def stop_reason(cfg: TrainConfig, epoch: int, best: Best, out_of_time: bool) -> str | None:
    if out_of_time:
        return f"time budget {cfg.max_minutes} min"
    if epoch - best.epoch >= cfg.patience:
        return f"early stop (patience {cfg.patience})"
    return None


def fit(cfg: TrainConfig, model: SessionTransformer, windows: Windows, val: EvalSet, n_items: int,
        device: torch.device, t_start: float, progress: bool, log: Log) -> tuple[Best, list[dict], str]:
    """The epoch loop: train, validate, keep the best epoch, halve the lr on plateaus, stop early.
    Returns (best epoch, history rows, stop reason); ``model`` is left at the last epoch."""
    opt = make_optimizer(model, cfg)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    gen = torch.Generator().manual_seed(cfg.seed)
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes and cfg.max_minutes > 0 else math.inf

    def out_of_time() -> bool:
        return time.time() - t_start > budget_s

    best, history, stop = Best(), [], "epochs"
    with _progress(progress) as rich_progress:
        bar = _Bar(rich_progress, math.ceil(len(windows) / cfg.batch_size))
        for epoch in range(1, cfg.epochs + 1):
            t_epoch = time.time()
            batches = make_batches(windows.lengths, cfg.batch_size, gen)
            bar.start(epoch, len(batches))
            loss, timed_out = train_epoch(model, opt, windows, batches, device, out_of_time, bar)
            train_s = time.time() - t_epoch
            score, val_metrics = validate(model, device, val, n_items, cfg.seed, cfg.select_protocol)
            row = {"epoch": epoch, "loss": round(loss, 4), "train_s": round(train_s, 1), **val_metrics,
                   "lr": opt.param_groups[0]["lr"], "elapsed_s": round(time.time() - t_start, 1)}
            history.append(row)
            improved = best.offer(epoch, score, row, model)
            log(json.dumps(row) + ("  *" if improved else ""))
            if not improved:
                halve_lr_on_plateau(opt, epoch - best.epoch, cfg.lr_patience)
            reason = stop_reason(cfg, epoch, best, timed_out)
            if reason:
                stop = reason
                break
    return best, history, stop


def refit(cfg: TrainConfig, model: SessionTransformer, windows: Windows, device: torch.device, log: Log,
          after_epoch: Callable[[], dict] | None = None) -> list[dict]:
    """``cfg.refit_epochs`` more epochs for the selected model on every target but the test items,
    the validation items included, at ``cfg.refit_lr``: it learns each user's most recent
    interaction, as a model trained for serving does. Nothing is validated after this (the
    validation items are now training data), so the count is chosen one step back
    (choose_refit_epochs, whose ``after_epoch`` scores each epoch's model)."""
    opt = make_optimizer(model, replace(cfg, lr=cfg.refit_lr))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    rows = []
    for epoch in range(1, cfg.refit_epochs + 1):
        t_epoch = time.time()
        batches = make_batches(windows.lengths, cfg.batch_size, gen)
        loss, _ = train_epoch(model, opt, windows, batches, device, lambda: False, _Bar(None, len(batches)))
        rows.append({"refit_epoch": epoch, "loss": round(loss, 4), "train_s": round(time.time() - t_epoch, 1)}
                    | (after_epoch() if after_epoch else {}))
        log(json.dumps(rows[-1]))
    return rows


def _rounded(metrics: dict[str, dict]) -> dict[str, dict]:
    return {p: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for p, r in metrics.items()}


def _print(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- training
def train_model(cfg: TrainConfig, sessions: list[Session], out: Path | None = None, *, progress: bool = False,
                log: Log | None = None, meta: dict | None = None,
                start: tuple[SessionTransformer, Vocab] | None = None,
                refit_choice: dict | None = None) -> TrainResult:
    """Train on ``sessions`` as ``cfg`` says, keep the best validation epoch, save it to ``out``
    (if given). ``meta`` is added to the summary's data description, ``refit_choice`` (how
    cfg.refit_epochs was chosen) to the summary. ``start`` warm-starts from a model and its
    catalogue (serving/retrain.py): its architecture and item indices are kept, and replace cfg's
    architecture fields."""
    if start is not None:
        cfg = cfg.with_architecture(start[0].cfg)
    device, t_start = start_run(cfg)
    if start is None:
        vocab, _, split = build_vocab_and_split(sessions)
        model = build_model(cfg, vocab, device)
    else:
        vocab, _, split = build_vocab_and_split(sessions, catalogue=start[1])
        model = start[0].to(device)
    return train_on_split(cfg, vocab, split, model, out, device=device, t_start=t_start, progress=progress,
                          log=log or _print, data=describe(sessions) | (meta or {}), refit_choice=refit_choice)


def choose_refit_epochs(cfg: TrainConfig, sessions: list[Session], max_epochs: int, *,
                        log: Log | None = None) -> dict:
    """The refit epoch count, chosen without the test items. Every sequence loses its last (test)
    item, so each user's validation item becomes a pseudo-test and the item before it the
    validation. A model is trained and selected on that as train_model does, then refit one epoch at
    a time up to ``max_epochs``, the pseudo-test scored before the first and after each (NDCG@10
    under cfg.select_protocol). The best count (ties: the fewer epochs) is the real run's refit."""
    log = log or _print
    held_back = [Session(s.session_id, s.user_id, s.interactions[:-1]) for s in sessions]
    result = train_model(replace(cfg, refit_epochs=0, test_eval=False), held_back, log=log)
    _, _, split = build_vocab_and_split(held_back, catalogue=result.vocab)
    device = pick_device(cfg.device)
    model = result.model.to(device)

    def pseudo_test() -> dict:
        res = evaluate_scorer(model_scorer(model, device), split.test, result.vocab.n_items, seed=cfg.seed,
                              protocols=(cfg.select_protocol,))[cfg.select_protocol]
        return {"pseudo_test_ndcg@10": round(res["ndcg@10"], 4), "pseudo_test_hr@10": round(res["hr@10"], 4)}

    curve = [{"refit_epoch": 0} | pseudo_test()]
    log(json.dumps(curve[0]))
    curve += refit(replace(cfg, refit_epochs=max_epochs), model, Windows.build(split.refit, cfg), device, log,
                   after_epoch=pseudo_test)
    best = max(curve, key=lambda r: (r["pseudo_test_ndcg@10"], -r["refit_epoch"]))
    return {"refit_epochs": best["refit_epoch"], "protocol": cfg.select_protocol, "curve": curve,
            "held_back_selection": {"best_epoch": result.summary.best_epoch, "epochs_run": result.summary.epochs_run,
                                    "train_seconds": result.summary.train_seconds}}


def train_session_benchmark(cfg: TrainConfig, directory: Path, out: Path | None = None, *, progress: bool = False,
                            log: Log | None = None) -> TrainResult:
    """The session benchmark in ``directory`` (train.txt, test.txt; data.load_session_benchmark),
    split by ``sequences.session_split``: trained on the sessions before the validation ones (every
    position of a session is a target, so every prefix is a training case), the epoch picked by
    validation MRR@20 under the sessions protocol, refit on every training session, scored on the
    test file's cases by the evaluator the kNN baselines go through."""
    train, test = load_session_benchmark(directory)
    n_items = int(max(max(s.max() for s in train), max(s.max() for s in test)))
    split = session_split(train, test, n_items)
    cfg = replace(cfg, select_protocol=SESSIONS, use_categories=False)
    device, t_start = start_run(cfg)
    vocab = benchmark_vocab(split)
    return train_on_split(cfg, vocab, split, build_model(cfg, vocab, device), out, device=device, t_start=t_start,
                          progress=progress, log=log or _print,
                          data={"format": SESSIONS, "path": str(directory), "train_sessions": len(train),
                                "test_cases": len(test)})


def benchmark_vocab(split: Split) -> Vocab:
    """The benchmark's ids are already indices 1..n: the catalogue is those ids in order."""
    return Vocab([str(i) for i in range(1, len(split.train_counts))], popularity=split.train_counts[1:].tolist())


def start_run(cfg: TrainConfig) -> tuple[torch.device, float]:
    """Seeds and threads set; (the device, the start time)."""
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return pick_device(cfg.device), time.time()


MIX_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # the kNN's share of the mixed distribution


def sessions_metrics(score: Scorer, ev: EvalSet, n_items: int, seed: int) -> dict:
    res = evaluate_scorer(score, ev, n_items, seed=seed, protocols=(SESSIONS,))[SESSIONS]
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}


def choose_mix(cfg: TrainConfig, model: SessionTransformer, split: Split, val: EvalSet, n_items: int,
               device: torch.device, log: Log) -> dict:
    """The weight of ``cfg.mix_with`` (fit on the training part) in the mix with the selected model,
    by validation MRR@20 on ``val`` (P@20 breaks ties), as the kNN grid chose its values."""
    knn = baseline_scorer(cfg.mix_with, split, n_items)
    rows = []
    for weight in MIX_WEIGHTS:
        res = sessions_metrics(mixed_scorer(model_scorer(model, device), knn, weight), val, n_items, cfg.seed)
        rows.append({"weight": weight, "p@20_pct": round(res["p@20_pct"], 2),
                     "mrr@20_pct": round(res["mrr@20_pct"], 2)})
        log(json.dumps({"mix_with": cfg.mix_with, **rows[-1]}))
    best = max(rows, key=lambda r: (r["mrr@20_pct"], r["p@20_pct"]))
    return {"with": cfg.mix_with, "grid": rows, "weight": best["weight"]}


def train_on_split(cfg: TrainConfig, vocab: Vocab, split: Split, model: SessionTransformer, out: Path | None, *,
                   device: torch.device, t_start: float, progress: bool, log: Log, data: dict,
                   refit_choice: dict | None = None) -> TrainResult:
    """Fit ``model`` on ``split`` (see train_model; the session benchmark's extra steps where
    cfg.select_protocol is sessions: figures on every validation case and the kNN mix)."""
    windows = Windows.build(split.train, cfg)
    val = validation_users(split.valid, cfg.val_users, cfg.seed)
    log(f"data: {data} | catalogue {vocab.n_items} items, {vocab.n_categories} categories | "
        f"train windows {len(windows)}, targets {windows.n_targets}, eval users {len(split.test)} | device {device}")

    best, history, stop = fit(cfg, model, windows, val, vocab.n_items, device, t_start, progress, log)
    if best.state is None:
        raise ValueError("no epoch was trained (epochs must be >= 1)")
    model.load_state_dict(best.state)
    benchmark = cfg.select_protocol == SESSIONS
    valid = mix = None
    if benchmark:  # the reported validation figures: every case, not the per-epoch sample
        valid = {SESSIONS: sessions_metrics(model_scorer(model, device), split.valid, vocab.n_items, cfg.seed)}
        if cfg.mix_with:
            mix = choose_mix(cfg, model, split, val, vocab.n_items, device, log)
            knn = baseline_scorer(cfg.mix_with, split, vocab.n_items)
            mix["valid"] = sessions_metrics(mixed_scorer(model_scorer(model, device), knn, mix["weight"]),
                                            split.valid, vocab.n_items, cfg.seed)
        log(json.dumps({"valid": valid, "mix": mix}))
    refit_rows = refit(cfg, model, Windows.build(split.refit, cfg), device, log) if cfg.refit_epochs > 0 else []
    summary = TrainSummary(epochs_run=len(history), best_epoch=best.epoch, stop=stop,
                           train_seconds=round(time.time() - t_start, 1), device=str(device), val=best.row,
                           history=history, seed=cfg.seed, hyperparameters=cfg.hyperparameters(),
                           data=data, refit=refit_rows, valid=valid, mix=mix, refit_choice=refit_choice)
    if cfg.test_eval:
        # the baselines see what the saved model saw: with a refit, every training sequence
        fit_seqs = split.refit if benchmark and cfg.refit_epochs > 0 else None
        protocols = (SESSIONS,) if benchmark else PROTOCOLS
        test_scorers = {"test": model_scorer(model, device),
                        "popular": baseline_scorer("popular", split, vocab.n_items, fit_seqs)}
        if mix is not None:
            knn = baseline_scorer(cfg.mix_with, split, vocab.n_items, fit_seqs)
            test_scorers["mix"] = mixed_scorer(test_scorers["test"], knn, mix["weight"])
        figures = {name: _rounded(evaluate_scorer(score, split.test, vocab.n_items, seed=cfg.seed,
                                                  protocols=protocols))
                   for name, score in test_scorers.items()}
        summary.test, summary.popular = figures["test"], figures["popular"]
        if mix is not None:
            mix["test"] = figures["mix"][SESSIONS]
    model.to("cpu").eval()
    if out is not None:
        save_model_dir(out, model, vocab, summary.to_dict())
    return TrainResult(summary, model, vocab)


# ----------------------------------------------------------------------------- CLI
DEFAULT = TrainConfig()
cli = typer.Typer(add_completion=False, help="Train a SessionTransformer (full-softmax CE, SASRec split).")


@cli.command()
def main(
    ctx: typer.Context,
    data: Path = typer.Option(None, help="dataset file (sasrec) or directory (diginetica, sessions); omit for "
                                         "synthetic"),
    data_format: str = typer.Option("sasrec", "--format", help="sasrec | diginetica | synthetic | sessions (the "
                                                               "session benchmark: train.txt, test.txt)"),
    out: Path = typer.Option(..., help="output model directory"),
    sessions: int = typer.Option(20_000, help="synthetic only: number of sessions to generate"),
    data_seed: int = typer.Option(0, help="synthetic only: generator seed"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    choose_refit: int = typer.Option(0, help="> 0: choose --refit-epochs from 0..N without the test items "
                                             "(choose_refit_epochs: one step back, the validation item as a "
                                             "pseudo-test), then train with it; sasrec, diginetica, synthetic"),
    # TrainConfig fields, by name: the config is built from ctx.params
    epochs: int = typer.Option(DEFAULT.epochs),
    max_minutes: float = typer.Option(DEFAULT.max_minutes, help="wall-clock budget for training (<=0: none)"),
    patience: int = typer.Option(DEFAULT.patience, help="epochs without validation improvement before stopping"),
    lr_patience: int = typer.Option(
        DEFAULT.lr_patience, help="halve the learning rate after this many epochs without improvement (0: never)"),
    device: str = typer.Option(DEFAULT.device, help="auto | cpu | cuda"),
    seed: int = typer.Option(DEFAULT.seed),
    d_model: int = typer.Option(DEFAULT.d_model),
    n_layers: int = typer.Option(DEFAULT.n_layers),
    n_heads: int = typer.Option(DEFAULT.n_heads),
    dropout: float = typer.Option(DEFAULT.dropout),
    max_len: int = typer.Option(DEFAULT.max_len),
    batch_size: int = typer.Option(DEFAULT.batch_size),
    lr: float = typer.Option(DEFAULT.lr),
    weight_decay: float = typer.Option(DEFAULT.weight_decay),
    use_categories: bool = typer.Option(DEFAULT.use_categories, "--categories/--no-categories",
                                        help="use a category embedding when the data has categories"),
    copy_head: bool = typer.Option(DEFAULT.copy_head, "--copy-head/--no-copy-head",
                                   help="gated pointer over the session's items (serving/model/transformer.py)"),
    logit_scale: float = typer.Option(DEFAULT.logit_scale, help="> 0: scores are this scale x the cosine of "
                                                                "state and item (0: dot products)"),
    all_windows: bool = typer.Option(DEFAULT.all_windows, "--all-windows/--last-window",
                                     help="train on every max_len window of long histories"),
    window_context: int = typer.Option(DEFAULT.window_context,
                                       help="history items each earlier window carries into the next "
                                            "(targets trained once)"),
    val_users: int = typer.Option(DEFAULT.val_users, help="validation users per epoch (seeded subset)"),
    select_protocol: str = typer.Option(DEFAULT.select_protocol,
                                        help="full | sampled100: validation NDCG@10 that picks the epoch"),
    refit_epochs: int = typer.Option(DEFAULT.refit_epochs, help="epochs after selection on every target but the "
                                                                "test items (validation items too)"),
    refit_lr: float = typer.Option(DEFAULT.refit_lr, help="learning rate of those epochs"),
    mix_with: str = typer.Option(DEFAULT.mix_with, help="sessions only: a session-kNN baseline (vsknn, vmis, ...) "
                                                        "mixed with the model, its weight chosen on validation"),
    threads: int = typer.Option(DEFAULT.threads, help="torch CPU threads (0: torch default)"),
) -> None:
    cfg = TrainConfig.from_dict(ctx.params)
    if data_format == SESSIONS:
        if choose_refit:
            raise typer.BadParameter("--choose-refit is for leave-last-out data, not --format sessions")
        if data is None:
            raise typer.BadParameter("--format sessions needs --data DIR (train.txt, test.txt)")
        report_session_benchmark(train_session_benchmark(cfg, data, out, progress=progress).summary, out)
        return
    sess = load(data_format, data, sessions=sessions, seed=data_seed)
    choice = None
    if choose_refit > 0:
        choice = choose_refit_epochs(cfg, sess, choose_refit)
        cfg = replace(cfg, refit_epochs=choice["refit_epochs"])
        print(f"refit epochs chosen on the held-back validation items: {cfg.refit_epochs} "
              f"(pseudo-test NDCG@10 by count: {[r['pseudo_test_ndcg@10'] for r in choice['curve']]})")
    result = train_model(cfg, sess, out, progress=progress,
                         meta={"format": data_format, "path": str(data) if data else None}, refit_choice=choice)
    s = result.summary
    test = s.test or {}
    sm, fu = test.get("sampled100", {}), test.get("full", {})
    nan = float("nan")
    print(f"done: {out} | best epoch {s.best_epoch}/{s.epochs_run} ({s.stop}) in {s.train_seconds:.0f}s "
          f"on {s.device} | "
          f"test sampled100 HR@10 {sm.get('hr@10', nan):.4f} NDCG@10 {sm.get('ndcg@10', nan):.4f} | "
          f"full HR@10 {fu.get('hr@10', nan):.4f} NDCG@10 {fu.get('ndcg@10', nan):.4f}")
    if s.popular is not None:
        model_ndcg, popular_ndcg = fu.get("ndcg@10", nan), s.popular.get("full", {}).get("ndcg@10", nan)
        verdict = "beats" if model_ndcg > popular_ndcg else "does NOT beat"
        print(f"the model {verdict} popular items on the same test sessions: full NDCG@10 {model_ndcg:.4f} "
              f"against {popular_ndcg:.4f}")


def report_session_benchmark(s: TrainSummary, out: Path) -> None:
    def figures(res: dict | None) -> str:
        if not res:
            return "-"
        return (f"P@20 {res['p@20_pct']:.2f} MRR@20 {res['mrr@20_pct']:.2f} HR@10 {res['hr@10']:.4f} "
                f"NDCG@10 {res['ndcg@10']:.4f}")

    print(f"done: {out} | best epoch {s.best_epoch}/{s.epochs_run} ({s.stop}) in {s.train_seconds:.0f}s on {s.device}")
    print(f"valid (every case): {figures((s.valid or {}).get(SESSIONS))} | "
          f"test: {figures((s.test or {}).get(SESSIONS))}")
    if s.mix:
        print(f"mixed with {s.mix['with']} at weight {s.mix['weight']}: valid {figures(s.mix.get('valid'))} | "
              f"test {figures(s.mix.get('test'))}")


if __name__ == "__main__":
    cli()
