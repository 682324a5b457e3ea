"""Compression of the served model: fp32, bf16, fp16 and int8 dynamic quantisation, quality and speed.

    python -m serving.offline.compress measure --model DIR --data ../shared/data/sequences/wikipedia.txt \\
        --format sasrec --name wikipedia.txt --jsonl docs/compression.jsonl
    python -m serving.offline.compress measure --model DIR --format diginetica --name "DIGINETICA sample" \\
        --jsonl docs/compression.jsonl
    python -m serving.offline.compress table --jsonl docs/compression.jsonl

``measure`` builds every precision of serving/model/precision.py from one trained checkpoint and,
for each, on the dataset the checkpoint was trained on:

* quality with the one seeded evaluator (serving.offline.evaluate, test item of the leave-last-out
  split): HR@10 and NDCG@10 under ``full`` and ``sampled100``, and the paired change of full
  NDCG@10 against fp32 with its standard error (users are the same, so the change is measured per user);
* the served path (serving.model.attribution.rank_with_attribution, as the Triton backend calls it):
  top-10 overlap with fp32 and how often the top-10 items cite the same interaction, on event
  prefixes of the dataset; and the faithfulness rate of serving.offline.faithfulness;
* speed: in-process ranking with attribution (``N_CANDIDATES`` 50, ``ATTRIBUTION_WINDOW`` 10, as
  config.pbtxt) at batch 1 and 64 on ``--threads`` torch threads (1: Triton's ``CPU_THREADS``),
  first thing in the process. Every variant runs the same batches, in turn, after a warm-up, so
  load from other processes slows them alike; each of ``--rounds`` rounds times ``--repeats``
  batches per variant and size, and the median of the rounds' medians is reported.

A precision the CPU cannot run is written as a row with ``supported: false`` and the error. The
rows of that dataset in ``--jsonl`` are replaced. ``table`` prints the Markdown table and applies
the rule: serve the precision that is fastest at its slower batch size, 1 or 64 (mean time
relative to fp32 over the files; the stack sends small batches under light load and batches of up
to 64 in a burst) among those whose full-ranking NDCG@10 is less than 1% (relative) below fp32's
on every file; fp32 when no other qualifies.
"""
from __future__ import annotations

import datetime
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import typer

from serving.model.artifacts import load_config, load_model_dir
from serving.model.attribution import rank_with_attribution
from serving.model.precision import PRECISIONS, float_linears, quantized_modules, state_bytes, with_precision
from serving.offline.bench_compute import event_prefixes
from serving.offline.data import load
from serving.offline.evaluate import model_scorer, score_eval_set, summarize_scored
from serving.offline.faithfulness import measure_faithfulness, session_prefixes
from serving.offline.sequences import encode, leave_last_out
from serving.offline.tradeoff import ndcg_gains

PROTOCOLS = ("full", "sampled100")
BATCH_SIZES = (1, 64)
MAX_NDCG_LOSS = 0.01  # relative loss of full-ranking NDCG@10 against fp32 a served variant may have
SLOW = 1.5  # a precision this many times slower than fp32 at batch 64 is called out in the table

cli = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])


# ----------------------------------------------------------------------------- building
def build_variants(model, precisions=PRECISIONS) -> dict[str, tuple[torch.nn.Module | None, str | None]]:
    """precision -> (model, None), or (None, error) when this machine cannot run it: each variant
    is tried on a small batch through the served path first."""
    items = torch.tensor([[0, 1, 2, 1], [3, 2, 1, 1]]) % (model.cfg.n_items + 1)
    types = (items > 0).long()
    out: dict[str, tuple[torch.nn.Module | None, str | None]] = {}
    for precision in precisions:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # torch 2.15: quantized tensors are deprecated
                variant = with_precision(model, precision)
                rank_with_attribution(variant, items, types, 3, True, 0)
            out[precision] = (variant, None)
        except (RuntimeError, NotImplementedError) as error:
            out[precision] = (None, f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
    return out


def describe_variant(model: torch.nn.Module) -> dict:
    """What runs in which precision: parameter dtypes, quantised and float Linear modules, size."""
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    return {"param_dtypes": dtypes, "int8_linears": quantized_modules(model),
            "float_linears": float_linears(model), "state_bytes": state_bytes(model)}


# ----------------------------------------------------------------------------- measuring
def quality(variants: dict, split, n_items: int, seed: int) -> dict[str, dict]:
    """precision -> HR@10 / NDCG@10 per protocol, and the paired change of full NDCG@10 vs fp32."""
    out: dict[str, dict] = {}
    gains: dict[str, np.ndarray] = {}
    for precision, model in variants.items():
        t0 = time.perf_counter()
        scored = score_eval_set(model_scorer(model), split.test, n_items, seed=seed, protocols=PROTOCOLS)
        metrics = summarize_scored(scored)
        gains[precision] = ndcg_gains(scored.ranks["full"])
        out[precision] = {f"{p}_{m}": round(float(metrics[p][m]), 4) for p in PROTOCOLS for m in ("hr@10", "ndcg@10")}
        out[precision] |= {"users": int(metrics["full"]["users"]), "eval_s": round(time.perf_counter() - t0, 1)}
    if "fp32" in gains:
        base = gains["fp32"]
        for precision, gain in gains.items():
            diff = gain - base
            mean = float(base.mean())
            out[precision]["full_ndcg@10_change"] = round(float(diff.mean()) / mean, 5) if mean else None
            out[precision]["full_ndcg@10_change_se"] = (round(float(diff.std(ddof=1) / np.sqrt(diff.size)) / mean, 5)
                                                       if mean and diff.size > 1 else None)
    return out


def served_agreement(variants: dict, items: torch.Tensor, types: torch.Tensor, n_candidates: int, window: int,
                     batch: int = 64) -> dict[str, dict]:
    """precision -> share of fp32's top-10 items it also ranks top 10, and, for items in both top-10
    lists, the share citing the same interaction (the served path, in batches of ``batch``)."""
    ranked = {}
    for precision, model in variants.items():
        parts = [rank_with_attribution(model, items[s:s + batch], types[s:s + batch], n_candidates, True, window)
                 for s in range(0, items.shape[0], batch)]
        ranked[precision] = (torch.cat([p.items[:, :10] for p in parts]),
                             torch.cat([p.attr_pos[:, :10] for p in parts]))
    if "fp32" not in ranked:
        return {}
    ref_items, ref_pos = ranked["fp32"]
    out = {}
    for precision, (top, pos) in ranked.items():
        overlap = same = both = 0
        for row in range(top.shape[0]):
            cited = dict(zip(ref_items[row].tolist(), ref_pos[row].tolist()))
            for item, position in zip(top[row].tolist(), pos[row].tolist()):
                if item in cited:
                    overlap += 1
                    both += 1
                    same += int(cited[item] == position)
        out[precision] = {"top10_overlap": round(overlap / ref_items.numel(), 4),
                          "same_citation": round(same / max(1, both), 4)}
    return out


def time_variants(variants: dict, items: torch.Tensor, types: torch.Tensor, batch_size: int, n_candidates: int,
                  window: int, repeats: int) -> dict[str, dict]:
    """Median (and quartiles of) ms per batch of ranking with attribution, the variants run in turn
    on the same batches (order rotated every round), after one warm-up batch each."""
    n_batches = max(1, items.shape[0] // batch_size)
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}

    def run(name: str, b: int) -> float:
        rows = slice((b % n_batches) * batch_size, (b % n_batches + 1) * batch_size)
        t0 = time.perf_counter()
        rank_with_attribution(variants[name], items[rows], types[rows], n_candidates, True, window)
        return time.perf_counter() - t0

    for name in names:
        run(name, 0)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(run(name, r + 1))
    out = {}
    for name, t in times.items():
        q1, median, q3 = np.percentile(np.array(t) * 1000, [25, 50, 75])
        out[name] = {f"b{batch_size}_ms": round(float(median), 3), f"b{batch_size}_ms_q1": round(float(q1), 3),
                     f"b{batch_size}_ms_q3": round(float(q3), 3), f"b{batch_size}_events_per_s":
                     round(batch_size * 1000 / float(median), 1)}
    return out


def timing(variants: dict, prefixes: tuple[torch.Tensor, torch.Tensor], n_candidates: int, window: int,
           repeats: int, rounds: int) -> dict[str, dict]:
    """``rounds`` rounds of ``time_variants`` per batch size, the sizes alternating: each figure is
    the median of the rounds' medians, and the rounds' medians are kept (``b64_ms_rounds``)."""
    per_round: dict[str, dict[str, list[float]]] = {p: {} for p in variants}
    for _ in range(rounds):
        for batch_size in BATCH_SIZES:
            for p, row in time_variants(variants, *prefixes, batch_size, n_candidates, window, repeats).items():
                for key, value in row.items():
                    per_round[p].setdefault(key, []).append(value)
    out: dict[str, dict] = {}
    for p, rows in per_round.items():
        out[p] = {key: round(float(np.median(values)), 3) for key, values in rows.items()}
        out[p] |= {f"b{b}_ms_rounds": rows[f"b{b}_ms"] for b in BATCH_SIZES}
    return out


def cpu_flags() -> list[str]:
    """The CPU features that decide which low-precision kernels exist (Linux only)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_fp16", "amx_int8")
    return [f for f in wanted if f in flags]


def measure(model_dir: Path, data_format: str, data: Path | None, name: str, precisions=PRECISIONS,
            threads: int = 1, repeats: int = 50, n_candidates: int = 50, window: int = 10, seed: int = 0,
            sessions: int = 20_000, data_seed: int = 0, faithfulness_n: int = 1000, rounds: int = 3,
            log=print) -> list[dict]:
    """One row per precision (see the module docstring)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model, vocab = load_model_dir(model_dir)
    training = load_config(model_dir).get("training", {})
    sess = load(data_format, data, sessions=sessions, seed=data_seed)
    split = leave_last_out(encode(sess, vocab), vocab.n_items)
    built = build_variants(model, precisions)
    variants = {p: m for p, (m, _) in built.items() if m is not None}
    log(f"{name}: built {', '.join(variants)}; unsupported: {[p for p in built if p not in variants] or 'none'}")

    prefixes = event_prefixes(sess, vocab, model.cfg.max_len, n=64 * 8, seed=seed)
    with torch.inference_mode():
        # Timing first, in a process that has done nothing else yet (as a Triton instance).
        speed = timing(variants, prefixes, n_candidates, window, repeats, rounds)
        log(f"{name}: timed batch sizes {BATCH_SIZES}, {rounds} rounds")
        t0 = time.perf_counter()
        scores = quality(variants, split, vocab.n_items, seed)
        log(f"{name}: quality in {time.perf_counter() - t0:.0f} s")
        agreement = served_agreement(variants, *prefixes, n_candidates, window)
        faith_inputs = session_prefixes(sess, vocab, model.cfg.max_len, seed)
        faith = {p: measure_faithfulness(m, *faith_inputs, 10, faithfulness_n, seed, window)
                 for p, m in variants.items()}
        log(f"{name}: agreement and faithfulness done")

    common = {"dataset": name, "format": data_format, "data": str(data) if data else None, "model": str(model_dir),
              "train_seconds": training.get("train_seconds"), "best_epoch": training.get("best_epoch"),
              "epochs_run": training.get("epochs_run"), "seed": seed, "threads": threads, "repeats": repeats,
              "rounds": rounds,
              "n_candidates": n_candidates, "window": window, "mean_length": round(float((prefixes[0] != 0).sum(1)
                                                                                          .float().mean()), 2),
              "date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), "
                         f"{torch.backends.cpu.get_cpu_capability()}, no GPU used",
              "cpu_flags": cpu_flags(), "quantized_engine": torch.backends.quantized.engine}
    rows = []
    for precision, (variant, error) in built.items():
        row = common | {"precision": precision, "supported": variant is not None}
        if variant is None:
            rows.append(row | {"error": error})
            continue
        rows.append(row | scores[precision] | agreement.get(precision, {}) | speed[precision]
                    | {"faithfulness": faith[precision]} | describe_variant(variant))
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    """Replace the rows of these datasets in the JSON-lines file ``path`` with ``rows``."""
    names = {r["dataset"] for r in rows}
    kept = [r for r in read_rows(path) if r["dataset"] not in names] if path.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in kept + rows))


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- the rule and the table
def choose(rows: list[dict], max_loss: float = MAX_NDCG_LOSS) -> tuple[str, dict[str, str]]:
    """(served precision, why each other one was not chosen or was). Eligible: supported on every
    file, full NDCG@10 less than ``max_loss`` (relative) below fp32's on every file. Among those,
    the lowest of (mean over the files of time relative to fp32) at batch 1 and at batch 64,
    whichever is worse; fp32 if none is faster at both."""
    datasets = sorted({r["dataset"] for r in rows})
    by = {(r["dataset"], r["precision"]): r for r in rows}
    reasons: dict[str, str] = {}
    relative: dict[str, float] = {}
    for precision in PRECISIONS:
        got = [by.get((d, precision)) for d in datasets]
        base = [by.get((d, "fp32")) for d in datasets]
        if any(r is None or not r["supported"] for r in got) or any(b is None for b in base):
            reasons[precision] = "not run or not supported on every file"
            continue
        losses = [1 - r["full_ndcg@10"] / b["full_ndcg@10"] for r, b in zip(got, base)]  # type: ignore[index]
        if precision != "fp32" and max(losses) >= max_loss:
            reasons[precision] = f"full NDCG@10 loss {100 * max(losses):.2f}% >= {100 * max_loss:g}%"
            continue
        at = {size: float(np.mean([r[f"{size}_ms"] / b[f"{size}_ms"] for r, b in zip(got, base)]))  # type: ignore[index]
              for size in ("b1", "b64")}
        relative[precision] = max(at.values())
        reasons[precision] = (f"eligible (loss at most {100 * max(losses):.2f}%), time {at['b1']:.2f}x fp32 "
                              f"at batch 1, {at['b64']:.2f}x at batch 64")
    if "fp32" not in relative:
        return "fp32", reasons
    return min(relative, key=lambda p: (relative[p], p != "fp32")), reasons


def faithful(result: dict) -> str:
    """The faithfulness rate, and over cases whose two deletions leave different sessions."""
    distinct = result.get("faithfulness_rate_distinct")
    return f"{100 * result['faithfulness_rate']:.1f}%" + ("" if distinct is None else f" ({100 * distinct:.1f}%)")


def markdown(rows: list[dict]) -> str:
    head = ("| file | precision | training | full HR@10 | full NDCG@10 | vs fp32 (± s.e.) | sampled100 HR@10 "
            "| sampled100 NDCG@10 | batch 1 ms | batch 64 ms | batch 64 vs fp32 | top-10 = fp32 | same citation "
            "| faithful (distinct) | weights | note |")
    lines = [head, "|" + "---|" * 16]
    fp32 = {r["dataset"]: r for r in rows if r["precision"] == "fp32" and r["supported"]}
    for r in rows:
        train = f"{r['train_seconds']:.0f} s, best epoch {r['best_epoch']}/{r['epochs_run']}" \
            if r.get("train_seconds") is not None else ""
        if not r["supported"]:
            lines.append(f"| {r['dataset']} | {r['precision']} | {train} |" + " |" * 12
                         + f" not supported on this CPU: {r['error']} |")
            continue
        base = fp32.get(r["dataset"])
        change = ""
        if r.get("full_ndcg@10_change") is not None:
            change = f"{100 * r['full_ndcg@10_change']:+.2f}% ± {100 * r['full_ndcg@10_change_se']:.2f}"
        ratio = r["b64_ms"] / base["b64_ms"] if base else float("nan")
        note = ""
        if ratio >= SLOW:
            note = f"{ratio:.1f}x slower than fp32 at batch 64 on this CPU"
        if r.get("int8_linears"):
            note = (note + "; " if note else "") + f"{len(r['int8_linears'])} Linear layers int8"
        lines.append(
            f"| {r['dataset']} | {r['precision']} | {train} | {r['full_hr@10']:.4f} | {r['full_ndcg@10']:.4f} | "
            f"{change} | {r['sampled100_hr@10']:.4f} | {r['sampled100_ndcg@10']:.4f} | {r['b1_ms']:.2f} | "
            f"{r['b64_ms']:.1f} | {ratio:.2f}x | {100 * r.get('top10_overlap', float('nan')):.1f}% | "
            f"{100 * r.get('same_citation', float('nan')):.1f}% | "
            f"{faithful(r['faithfulness'])} | "
            f"{r['state_bytes'] / 1e6:.2f} MB | {note} |")
    return "\n".join(lines)


@cli.command("measure")
def measure_cmd(
    model_dir: Path = typer.Option(..., "--model", help="trained model directory (serving.offline.train --out)"),
    data: Path = typer.Option(None, help="dataset file (sasrec) or directory (diginetica)"),
    data_format: str = typer.Option("sasrec", "--format", help="sasrec | diginetica | synthetic"),
    name: str = typer.Option(None, help="the file's name in the table (default: the data path or format)"),
    jsonl: Path = typer.Option(Path("docs/compression.jsonl"), help="JSON lines to write (this dataset's rows "
                                                                    "replaced)"),
    precisions: str = typer.Option(",".join(PRECISIONS), help="comma-separated"),
    threads: int = typer.Option(1, help="torch threads (Triton's CPU_THREADS is 1)"),
    repeats: int = typer.Option(50, help="timed batches per variant, batch size and round"),
    rounds: int = typer.Option(3, help="timing rounds (batch sizes alternating); the median of their medians"),
    n_candidates: int = typer.Option(50, help="as Triton's N_CANDIDATES"),
    window: int = typer.Option(10, help="as Triton's ATTRIBUTION_WINDOW"),
    seed: int = typer.Option(0),
    sessions: int = typer.Option(20_000, help="synthetic only"),
    data_seed: int = typer.Option(0, help="synthetic only"),
) -> None:
    chosen = [p.strip() for p in precisions.split(",") if p.strip()]
    unknown = set(chosen) - set(PRECISIONS)
    if unknown:
        raise typer.BadParameter(f"unknown precisions {sorted(unknown)}")
    rows = measure(model_dir, data_format, data, name or (data.name if data else data_format), chosen, threads,
                   repeats, n_candidates, window, seed, sessions, data_seed, rounds=rounds)
    write_rows(jsonl, rows)
    typer.echo(markdown(rows))


@cli.command("table")
def table_cmd(jsonl: Path = typer.Option(Path("docs/compression.jsonl"))) -> None:
    rows = read_rows(jsonl)
    typer.echo(markdown(rows))
    served, reasons = choose(rows)
    typer.echo(f"\nserved: {served}")
    for precision, why in reasons.items():
        typer.echo(f"  {precision}: {why}")


if __name__ == "__main__":
    cli()
