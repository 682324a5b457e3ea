"""Explanation tokens must be faithful: on a seeded dataset, deleting the cited interaction lowers
the recommended item's score more than deleting a random other one, in at least 90% of cases, for
the trained weights and for the precision Triton serves (serving/model/precision.py)."""
import pytest
import torch

from serving.model.precision import DEFAULT_PRECISION, with_precision
from serving.offline.data import generate_synthetic
from serving.offline.faithfulness import measure_faithfulness, session_prefixes
from serving.offline.train import TrainConfig, train_model


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(2)
    cfg = TrainConfig(d_model=32, n_layers=1, n_heads=1, max_len=20, epochs=3, patience=3, max_minutes=2, device="cpu",
                      seed=0, test_eval=False)
    result = train_model(cfg, generate_synthetic(2000, n_items=300, n_categories=10, seed=3), log=lambda *_: None)
    held_out = generate_synthetic(400, n_items=300, n_categories=10, seed=3)  # same catalogue, new sessions
    return result.model.eval(), session_prefixes(held_out, result.vocab, max_len=20, seed=1)


@pytest.mark.parametrize("precision", sorted({"fp32", DEFAULT_PRECISION}))
def test_cited_interaction_matters_more_than_a_random_one(trained, precision):
    model, (items, types) = trained
    result = measure_faithfulness(with_precision(model, precision), items, types, k=10, n=500, seed=0)
    assert result["cases"] >= 400
    assert result["faithfulness_rate"] >= 0.9, result
    assert result["faithfulness_rate_distinct"] >= result["faithfulness_rate"] - 1e-9
    assert 0 <= result["same_session_share"] < 0.1
    assert result["mean_cited_drop"] > result["mean_random_drop"]
