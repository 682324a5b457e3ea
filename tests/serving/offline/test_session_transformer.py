"""A short seeded SessionTransformer run on the session benchmark (the shared DIGINETICA files,
SR-GNN preprocessing) must beat the project's item-kNN fit on the same sessions, on the same test
cases, under the same protocol. Full runs and their figures: docs/results.md, "Session benchmark"."""
import time
from dataclasses import replace

import pytest

from serving.offline.data import load_session_benchmark
from serving.offline.evaluate import SESSIONS, evaluate_scorer, itemknn_scorer
from serving.offline.sequences import item_counts, session_split
from serving.offline.train import TrainConfig, benchmark_vocab, build_model, start_run, train_on_split

pytestmark = pytest.mark.data

N_ITEMS = 43_097
FIT_SESSIONS = 20_000
# few epochs over few sessions: a small model, a high learning rate, small batches (more steps);
# no time budget, so the result is the same on any machine
SHORT = TrainConfig(d_model=64, n_layers=1, n_heads=2, dropout=0.1, batch_size=128, lr=5e-3, epochs=5, patience=5,
                    max_minutes=0, refit_epochs=0, val_users=2_000, select_protocol="sessions", use_categories=False,
                    threads=2, device="cpu")


def test_short_run_beats_itemknn_on_the_session_benchmark(shared_data):
    train, test = load_session_benchmark(shared_data / "sessions" / "diginetica-srgnn")
    split = session_split(train, test, N_ITEMS)
    # the most recent FIT_SESSIONS sessions before validation (the nearest to the test week), every
    # 35th validation case, every 20th test case (~3,000 each): a few CPU minutes
    fit = split.train[-FIT_SESSIONS:]
    split = replace(split, train=fit, train_counts=item_counts(fit, N_ITEMS),
                    valid=split.valid.subset(range(0, len(split.valid), 35)),
                    test=split.test.subset(range(0, len(split.test), 20)))
    device, t_start = start_run(SHORT)
    vocab = benchmark_vocab(split)
    result = train_on_split(SHORT, vocab, split, build_model(SHORT, vocab, device), None, device=device,
                            t_start=t_start, progress=False, log=print, data={})
    model = result.summary.test[SESSIONS]
    knn = evaluate_scorer(itemknn_scorer([u.items for u in fit], split.train_counts, N_ITEMS), split.test, N_ITEMS,
                          protocols=(SESSIONS,))[SESSIONS]
    got = {"model": (model["p@20_pct"], model["mrr@20_pct"]), "itemknn": (knn["p@20_pct"], knn["mrr@20_pct"])}
    print(got, f"{time.time() - t_start:.0f} s")
    assert model["p@20_pct"] > knn["p@20_pct"] and model["mrr@20_pct"] > knn["mrr@20_pct"], got
