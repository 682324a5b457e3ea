"""The diversity trade-off curve: accuracy against exposure for a grid of λ (RECO_DIVERSITY).

    python -m serving.offline.tradeoff --dataset synthetic=.run/tradeoff/synthetic \\
        --dataset diginetica=.run/tradeoff/diginetica --plot docs/exposure-tradeoff.png

Each model is scored once on its dataset's test split (serving.offline.evaluate.score_eval_set);
every λ then re-ranks the same top-50 pools (summarize_scored), so the grid costs one scoring per
dataset. Accuracy is HR@10 / NDCG@10 under the ``served`` protocol (what the worker shows: every
item but the one on screen); exposure and diversity come from the top-10 lists coverage@10 uses
(history masked), re-ranked with the same λ. Prints a Markdown table; ``--json`` and ``--plot``
write the numbers and a PNG.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import typer

from serving.offline.evaluate import reranked_ranks, score_eval_set, summarize_scored

GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
PROTOCOL = "served"
COLUMNS = ("ndcg@10", "hr@10", "gini@10", "category_diversity@10", "coverage@10", "long_tail@10", "novelty@10")

cli = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])


def curve(model_dir: Path, data_format: str, data: Path | None = None, lambdas=GRID, sessions: int = 20_000,
          data_seed: int = 0, seed: int = 0) -> list[dict]:
    """One row per λ: the served-protocol accuracy and the exposure figures of ``model_dir``."""
    from serving.model.artifacts import load_model_dir
    from serving.offline.data import load
    from serving.offline.evaluate import model_scorer
    from serving.offline.sequences import encode, leave_last_out

    sess = load(data_format, data, sessions=sessions, seed=data_seed)
    net, vocab = load_model_dir(model_dir)
    split = leave_last_out(encode(sess, vocab), vocab.n_items)
    t0 = time.time()
    scored = score_eval_set(model_scorer(net), split.test, vocab.n_items, seed=seed, protocols=(PROTOCOL,))
    score_s = time.time() - t0
    cats = vocab.category_of_index().numpy()
    base_gain = ndcg_gains(scored.ranks[PROTOCOL])
    rows = []
    for lam in lambdas:
        t1 = time.time()
        res = summarize_scored(scored, lam, cats, split.train_counts)[PROTOCOL]
        # paired over users: the change of NDCG@10 against λ = 0 and its standard error
        diff = ndcg_gains(reranked_ranks(scored, PROTOCOL, lam, cats)) - base_gain
        base = base_gain.mean()
        rows.append({"dataset": data_format, "lambda": lam, **{c: res.get(c) for c in COLUMNS},
                     "ndcg_change": float(diff.mean() / base) if base else None,
                     "ndcg_change_se": float(diff.std(ddof=1) / np.sqrt(diff.size) / base) if base and diff.size > 1
                     else None,
                     "users": res["users"], "score_s": round(score_s, 1), "rerank_s": round(time.time() - t1, 2)})
    return rows


def ndcg_gains(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-user NDCG@k (serving.offline.ranking_metrics.ndcg before the mean)."""
    r = np.asarray(ranks, dtype=np.float64)
    out = np.zeros_like(r)
    hit = r < k
    out[hit] = 1.0 / np.log2(r[hit] + 2.0)
    return out


def markdown(rows: list[dict]) -> str:
    head = ("| dataset | λ | NDCG@10 | vs λ=0 (± s.e.) | HR@10 | Gini@10 | category diversity@10 | coverage@10 "
            "| long-tail share@10 | novelty@10 (bits) |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        change = "" if r["ndcg_change"] is None else f"{100 * r['ndcg_change']:+.1f}%"
        if r["lambda"] and r.get("ndcg_change_se") is not None:
            change += f" ± {100 * r['ndcg_change_se']:.1f}"
        lines.append(f"| {r['dataset']} | {r['lambda']:g} | {r['ndcg@10']:.4f} | {change} | {r['hr@10']:.4f} | "
                     f"{r['gini@10']:.4f} | {r['category_diversity@10']:.4f} | {r['coverage@10']:.4f} | "
                     f"{r['long_tail@10']:.4f} | {r['novelty@10']:.2f} |")
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, x, label in ((axes[0], "gini@10", "exposure Gini@10 (lower = more even)"),
                         (axes[1], "category_diversity@10", "intra-list category diversity@10")):
        for name in dict.fromkeys(r["dataset"] for r in rows):
            pts = [r for r in rows if r["dataset"] == name]
            xs = [r[x] for r in pts]
            ys = [100 * (r["ndcg_change"] or 0.0) for r in pts]
            ax.plot(xs, ys, marker="o", label=f"{name} (NDCG@10 at λ=0: {pts[0]['ndcg@10']:.3f})")
            labels: dict[tuple[float, float], list[str]] = {}  # points that coincide get one label
            for r, xv, yv in zip(pts, xs, ys):
                labels.setdefault((round(xv, 6), round(yv, 6)), []).append(f"{r['lambda']:g}")
            for n, ((xv, yv), lams) in enumerate(labels.items()):  # alternate above / below: neighbours are close
                ax.annotate("λ=" + ", ".join(lams), (xv, yv), textcoords="offset points",
                            xytext=(4, 5 if n % 2 == 0 else -11), fontsize=7)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("NDCG@10 change vs λ=0, served protocol (%)")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Category re-rank (MMR, RECO_DIVERSITY = λ): accuracy against exposure")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


@cli.command()
def main(
    dataset: list[str] = typer.Option(..., help="FORMAT=MODEL_DIR, e.g. synthetic=.run/tradeoff/synthetic "
                                                "(diginetica reads ../shared/data/diginetica); repeatable"),
    lambdas: str = typer.Option(",".join(f"{x:g}" for x in GRID), help="comma-separated λ grid (0 first)"),
    sessions: int = typer.Option(20_000, help="synthetic only: number of sessions (as serving.offline.train)"),
    data_seed: int = typer.Option(0, help="synthetic only: generator seed (as serving.offline.train)"),
    seed: int = typer.Option(0, help="seed of the tie-breaks"),
    json_path: Path = typer.Option(None, "--json", help="write the rows as JSON"),
    plot_path: Path = typer.Option(None, "--plot", help="write the PNG plot"),
) -> None:
    grid = tuple(float(x) for x in lambdas.split(","))
    rows: list[dict] = []
    for spec in dataset:
        fmt, sep, model_dir = spec.partition("=")
        if not sep:
            raise typer.BadParameter(f"--dataset wants FORMAT=MODEL_DIR, got {spec!r}")
        rows += curve(Path(model_dir), fmt, None, grid, sessions, data_seed, seed)
    print(markdown(rows))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(rows, indent=1))
    if plot_path:
        print(f"plot: {plot(rows, plot_path)}")


if __name__ == "__main__":
    cli()
