"""The compute floor of serving: the served model ranking and attributing in-process, no Triton.

Batches are what the Triton backend receives: for a random event of a synthetic session, the
session up to that event, its last ``max_len`` known interactions, left-padded to ``max_len``.
For each batch size, times ``rank_with_attribution`` without attribution, with brute-force
occlusion and with prefix-reuse occlusion (serving.model.attribution), on one torch thread, and
prints one JSON line per (method, batch size). The model runs in the served precision
(serving.model.precision.DEFAULT_PRECISION, as config.pbtxt) unless ``--precision`` names another.

    python -m serving.offline.bench_compute --model .run/model --batch-sizes 1,8,32,64 --window 10

(It lives in serving.offline, not serving.online: it draws synthetic sessions from serving.offline.data,
and serving.online may not import serving.offline, see docs/architecture.md.)
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
import typer

from serving.model.artifacts import load_model_dir
from serving.model.attribution import rank_with_attribution
from serving.model.precision import DEFAULT_PRECISION, PRECISIONS, with_precision
from serving.offline.data import generate_synthetic
from serving.offline.sequences import encode, pad_left

cli = typer.Typer(add_completion=False)

METHODS = {"none": (False, "brute"), "brute": (True, "brute"), "prefix": (True, "prefix")}


def event_prefixes(sessions, vocab, max_len: int, n: int, seed: int,
                   lengths: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` serving inputs [n, max_len]: each a session up to a uniformly drawn event (so long
    sessions weigh as much as the events they produce), unknown items dropped, left-padded.
    ``lengths``: draw the event among sessions of these lengths instead (real shoppers', see
    ``session_lengths``) and take its prefix from a synthetic session at least that long."""
    encoded = [(e.items[e.items != 0], e.types[e.items != 0]) for e in encode(sessions, vocab)]
    events = [(s, t) for s, (items, _) in enumerate(encoded) for t in range(1, len(items) + 1)]
    if not events:
        raise ValueError("no session has an item known to the model's vocabulary")
    rng = random.Random(seed)
    if lengths is None:
        drawn = [events[rng.randrange(len(events))] for _ in range(n)]
    else:
        prefix_lengths = [t for length in lengths for t in range(1, length + 1)]  # one per real event
        longest = max(t for _, t in events)
        long_enough = {t: [s for s, (items, _) in enumerate(encoded) if len(items) >= t] for t in range(1, longest + 1)}
        drawn = []
        for _ in range(n):
            t = min(rng.choice(prefix_lengths), longest)
            drawn.append((rng.choice(long_enough[t]), t))
    items = [encoded[s][0][:t] for s, t in drawn]
    types = [encoded[s][1][:t] for s, t in drawn]
    return torch.from_numpy(pad_left(items, max_len)), torch.from_numpy(pad_left(types, max_len))


def session_lengths(views_csv: Path) -> list[int]:
    """Views per session in a DIGINETICA views file (``session_id;...``): real shoppers' session lengths."""
    return pd.read_csv(views_csv, sep=";", usecols=["session_id"])["session_id"].value_counts().tolist()


def time_methods(model, items, types, batch_size: int, n_candidates: int, window: int, methods: list[str],
                 seconds: float) -> list[dict]:
    """Round-robin over ``methods`` (one batch each in turn, the same batches for all) until each
    has run ``seconds``: load from other processes then slows every method alike."""
    n_batches = max(1, items.shape[0] // batch_size)
    times: dict[str, list[float]] = {m: [] for m in methods}

    def run(method: str, b: int) -> float:
        attribute, how = METHODS[method]
        rows = slice((b % n_batches) * batch_size, (b % n_batches + 1) * batch_size)
        t0 = time.perf_counter()
        rank_with_attribution(model, items[rows], types[rows], n_candidates, attribute, window, how)
        return time.perf_counter() - t0

    for method in methods:
        run(method, 0)  # warm-up
    b = 0
    while any(sum(t) < seconds or len(t) < 3 for t in times.values()):
        b += 1
        for method in methods:
            if sum(times[method]) < seconds or len(times[method]) < 3:
                times[method].append(run(method, b))
    rows = []
    for method in methods:
        total = sum(times[method])
        rows.append({"method": method, "batch_size": batch_size, "window": window, "n_candidates": n_candidates,
                     "events_per_s": round(len(times[method]) * batch_size / total, 1),
                     "ms_per_batch": round(1000 * float(np.median(times[method])), 3),
                     "ms_per_batch_mean": round(1000 * total / len(times[method]), 3), "batches": len(times[method]),
                     "mean_length": round(float((items != 0).sum(1).float().mean()), 2),
                     "threads": torch.get_num_threads()})
    return rows


@cli.command()
def main(
    model_dir: Path = typer.Option(..., "--model"),
    batch_sizes: str = typer.Option("1,8,32,64", help="comma-separated"),
    window: int = typer.Option(10, help="attribution window, as Triton's ATTRIBUTION_WINDOW (0 = all)"),
    seconds: float = typer.Option(3.0, help="timed seconds per (method, batch size)"),
    n_candidates: int = typer.Option(50, help="as Triton's N_CANDIDATES"),
    methods: str = typer.Option("none,brute,prefix", help=f"comma-separated, of {', '.join(METHODS)}"),
    sessions: int = typer.Option(2000, help="synthetic sessions to draw events from"),
    data_seed: int = typer.Option(0, help="the catalogue seed the model was trained with"),
    seed: int = typer.Option(1),
    lengths_csv: Optional[Path] = typer.Option(
        None, "--session-lengths", help="a DIGINETICA views CSV: events drawn from sessions as long as its "
                                        "sessions (as tools/bench_client.py --session-lengths)"),
    precision: str = typer.Option(DEFAULT_PRECISION, help=f"{' | '.join(PRECISIONS)}: the variant timed, as "
                                                          "Triton's PRECISION (serving/model/precision.py)"),
) -> None:
    if precision not in PRECISIONS:
        raise typer.BadParameter(f"--precision must be one of {', '.join(PRECISIONS)}")
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    fp32, vocab = load_model_dir(model_dir)
    model = with_precision(fp32, precision)
    sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = set(chosen) - set(METHODS)
    if unknown:
        raise typer.BadParameter(f"unknown methods {sorted(unknown)}")
    items, types = event_prefixes(generate_synthetic(sessions, seed=data_seed), vocab, fp32.cfg.max_len,
                                  n=max(sizes) * 16, seed=seed,
                                  lengths=session_lengths(lengths_csv) if lengths_csv else None)
    with torch.inference_mode():
        for size in sizes:
            for row in time_methods(model, items, types, size, n_candidates, window, chosen, seconds):
                typer.echo(json.dumps(row | {"precision": precision}))


if __name__ == "__main__":
    cli()
