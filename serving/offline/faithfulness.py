"""Faithfulness benchmark for explanation tokens.

For N recommendations on held-out sessions: delete the interaction the token cites and re-score
the recommended item; delete a random other interaction and re-score again. The explanation is
faithful for that item when the cited deletion lowers the score more. Also reports the latency
that attribution adds per request.

    python -m serving.offline.faithfulness --model .run/model --format synthetic --n 1000
    python -m serving.offline.faithfulness --model DIR --format diginetica --precision fp32   # another variant

It checks the served precision (serving.model.precision.DEFAULT_PRECISION, as config.pbtxt) unless
``--precision`` names another.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import typer

from serving.model.artifacts import load_model_dir
from serving.model.attribution import rank_with_attribution, remove_positions, score_candidates
from serving.model.precision import DEFAULT_PRECISION, PRECISIONS, with_precision
from serving.offline.data import load
from serving.offline.sequences import encode, pad_left

cli = typer.Typer(add_completion=False)


def session_prefixes(sessions, vocab, max_len: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One random cut per session with at least two known interactions before it."""
    rng = random.Random(seed)
    items, types = [], []
    for enc in encode(sessions, vocab):
        known = enc.items != 0
        seq_items, seq_types = enc.items[known], enc.types[known]
        if len(seq_items) < 3:
            continue
        cut = rng.randint(2, len(seq_items) - 1)
        items.append(seq_items[:cut])
        types.append(seq_types[:cut])
    return torch.from_numpy(pad_left(items, max_len)), torch.from_numpy(pad_left(types, max_len))


@torch.no_grad()
def measure_faithfulness(model, items: torch.Tensor, types: torch.Tensor, k: int, n: int, seed: int,
                         window: int = 0) -> dict:
    """The random other interaction is drawn from the whole session, also outside ``window``.

    When it sits in the same run of identical neighbours (same item and event type) as the cited
    one, both deletions leave the same session and the two drops are equal: not faithful in the
    rate. ``same_session_share`` counts those cases, and ``faithfulness_rate_distinct`` is the rate
    over the others. Exact models tie there exactly; a model whose scores carry noise from the
    batch (int8 dynamic quantisation scales activations per call) breaks those ties at random,
    which moves ``faithfulness_rate`` but not the distinct rate."""
    rng = random.Random(seed)
    ranked = rank_with_attribution(model, items, types, k, window=window)
    cases = []  # (row, item, cited position, random other position)
    for row in range(items.shape[0]):
        valid = (items[row] != 0).nonzero().flatten().tolist()
        for c in range(k):
            cited = int(ranked.attr_pos[row, c])
            if cited >= 0 and ranked.attr_drop[row, c] > 0 and len(valid) >= 2:  # a token cites it
                cases.append((row, int(ranked.items[row, c]), cited, rng.choice([p for p in valid if p != cited])))
    cases = cases[:n]
    rows = torch.tensor([c[0] for c in cases])
    candidates = torch.tensor([[c[1]] for c in cases])
    full = ranked.scores.new_tensor([float(ranked.scores[c[0], list(ranked.items[c[0]]).index(c[1])]) for c in cases])

    def without(positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return remove_positions(items, rows, positions), remove_positions(types, rows, positions)

    def drop_without(variants: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        scores = score_candidates(model, *variants, candidates)
        return full - scores[:, 0].float()

    cited_session = without(torch.tensor([c[2] for c in cases]))
    other_session = without(torch.tensor([c[3] for c in cases]))
    cited_drop, random_drop = drop_without(cited_session), drop_without(other_session)
    same = (cited_session[0] == other_session[0]).all(1) & (cited_session[1] == other_session[1]).all(1)
    faithful = cited_drop > random_drop
    return {
        "cases": len(cases),
        "faithfulness_rate": round(float(faithful.float().mean()), 4),
        "mean_cited_drop": round(float(cited_drop.mean()), 4),
        "mean_random_drop": round(float(random_drop.mean()), 4),
        "same_session_share": round(float(same.float().mean()), 4),
        "faithfulness_rate_distinct": round(float(faithful[~same].float().mean()), 4) if bool((~same).any()) else None,
    }


@torch.no_grad()
def attribution_latency(model, items: torch.Tensor, types: torch.Tensor, k: int, batch: int, repeats: int,
                        window: int = 0) -> dict:
    """Median ms per request of ranking with and without attribution, at a given request batch."""
    def median_ms(attribute: bool) -> float:
        times = []
        for r in range(repeats):
            start = (r * batch) % max(1, items.shape[0] - batch)
            t0 = time.perf_counter()
            rank_with_attribution(model, items[start:start + batch], types[start:start + batch], k, attribute, window)
            times.append((time.perf_counter() - t0) * 1000)
        return float(np.median(times))

    median_ms(True)  # warm-up
    plain, attributed = median_ms(False), median_ms(True)
    return {f"batch{batch}_ms_plain": round(plain, 2), f"batch{batch}_ms_attribution": round(attributed, 2),
            f"batch{batch}_ms_added_per_request": round((attributed - plain) / batch, 3)}


@cli.command()
def main(
    model_dir: Path = typer.Option(..., "--model"),
    data_format: str = typer.Option("synthetic", "--format"),
    data: Path = typer.Option(None),
    sessions: int = typer.Option(3000, help="synthetic only: held-out sessions to draw"),
    data_seed: int = typer.Option(0, help="synthetic only: the catalogue seed the model was trained with"),
    n: int = typer.Option(1000, help="recommendations (session, item) to test"),
    k: int = typer.Option(10),
    seed: int = typer.Option(0),
    latency_repeats: int = typer.Option(20),
    window: int = typer.Option(10, help="attribute over the last N interactions (0 = all), as Triton's "
                                        "ATTRIBUTION_WINDOW"),
    precision: str = typer.Option(DEFAULT_PRECISION, help=f"{' | '.join(PRECISIONS)}: the variant checked, as "
                                                          "Triton's PRECISION (serving/model/precision.py)"),
    threads: int = typer.Option(0, help="torch threads (0: torch's default; Triton's CPU_THREADS is 1)"),
) -> None:
    if precision not in PRECISIONS:
        raise typer.BadParameter(f"--precision must be one of {', '.join(PRECISIONS)}")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    fp32, vocab = load_model_dir(model_dir)
    model = with_precision(fp32, precision)
    sessions_loaded = load(data_format, data, sessions=sessions, seed=data_seed)
    items, types = session_prefixes(sessions_loaded, vocab, fp32.cfg.max_len, seed)
    result = {"model": str(model_dir), "format": data_format, "precision": precision, "k": k, "window": window,
              **measure_faithfulness(model, items, types, k, n, seed, window)}
    for batch in (1, 64):
        result.update(attribution_latency(model, items, types, k, batch, latency_repeats, window))
    typer.echo(json.dumps(result))


if __name__ == "__main__":
    cli()
