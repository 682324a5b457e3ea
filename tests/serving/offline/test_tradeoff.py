"""The trade-off script on a tiny untrained model: λ = 0 is evaluate's served row, the grid reuses one
scoring, the table and the plot come out."""
import numpy as np
import pytest
import torch

from serving.model.transformer import ModelConfig, SessionTransformer
from serving.offline import tradeoff
from serving.offline.data import generate_synthetic
from serving.offline.evaluate import evaluate_scorer, model_scorer
from serving.offline.sequences import build_vocab_and_split, encode, leave_last_out


@pytest.fixture
def tiny_model(tmp_path):
    from serving.model.artifacts import save_model_dir

    sessions = generate_synthetic(300, seed=1)  # what curve() loads for synthetic, 300 sessions, seed 1
    vocab, _, _ = build_vocab_and_split(sessions)
    torch.manual_seed(0)
    net = SessionTransformer(ModelConfig(n_items=vocab.n_items, n_categories=vocab.n_categories, max_len=8,
                                         d_model=16, n_heads=2, n_layers=1)).eval()
    return save_model_dir(tmp_path / "m", net, vocab), sessions, net, vocab


def test_curve_starts_at_evaluates_served_numbers_and_diversifies(tiny_model):
    model_dir, sessions, net, vocab = tiny_model
    rows = tradeoff.curve(model_dir, "synthetic", lambdas=(0.0, 0.5, 1.0), sessions=300, data_seed=1)
    split = leave_last_out(encode(sessions, vocab), vocab.n_items)
    plain = evaluate_scorer(model_scorer(net), split.test, vocab.n_items, protocols=("served",),
                            item_category=vocab.category_of_index().numpy(), train_counts=split.train_counts)["served"]
    assert [r["lambda"] for r in rows] == [0.0, 0.5, 1.0]
    assert {c: rows[0][c] for c in tradeoff.COLUMNS} == {c: plain[c] for c in tradeoff.COLUMNS}
    assert rows[0]["ndcg_change"] == 0.0 and rows[0]["ndcg_change_se"] == 0.0
    assert rows[2]["category_diversity@10"] > rows[0]["category_diversity@10"]
    table = tradeoff.markdown(rows)
    assert table.count("\n") == 4 and "| synthetic | 0.5 |" in table


def test_ndcg_gains_match_the_metric():
    ranks = np.array([0, 1, 9, 10, np.inf])
    assert tradeoff.ndcg_gains(ranks).tolist() == pytest.approx([1, 1 / np.log2(3), 1 / np.log2(11), 0, 0])


def test_plot_writes_a_png(tmp_path):
    rows = [{"dataset": d, "lambda": lam, "ndcg@10": 0.3 - lam / 10, "ndcg_change": -lam / 3, "gini@10": 0.6 + lam / 10,
             "category_diversity@10": 0.4 + lam / 2} for d in ("a", "b") for lam in (0.0, 0.5, 1.0)]
    rows[-1] = dict(rows[-2], **{"lambda": 1.0})  # coinciding points share a label
    out = tradeoff.plot(rows, tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
