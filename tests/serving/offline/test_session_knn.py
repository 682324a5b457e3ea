"""Session-kNN scores computed by hand on tiny sessions, and (with the shared files) the tuned
session-kNN beating the papers' last-item Item-KNN on the benchmark's validation split."""
import math
import os

import numpy as np
import pytest

from serving.offline.data import SHARED_DATA, load_session_benchmark
from serving.offline.evaluate import baseline_scorer, evaluate_scorer, itemknn_scorer
from serving.offline.sequences import session_split
from serving.offline.session_knn import KnnConfig, fit_index, knn_scores

TRAIN = [np.array([1, 2, 3]), np.array([2, 4]), np.array([5, 1])]  # sessions 0, 1, 2 (2 is the most recent)


def scores(cfg, query, train=TRAIN, n_items=5):
    out = knn_scores(fit_index(train, n_items), np.array([query]), cfg)[0].double().numpy()
    return np.round(out, 5)  # drops the 1e-6 popularity tie-breaker


def test_vsknn_linear_decay_by_hand():
    # query [1, 2]: w(1) = 1/2, w(2) = 2/2. sim: s0 {1,2,3} 1.5, s1 {2,4} 1, s2 {5,1} 0.5; k = 2 keeps s0, s1
    # items: 1 -> 1.5, 2 -> 2.5, 3 -> 1.5, 4 -> 1, 5 -> 0 (s2 is not a neighbour); scaled by the max 2.5
    got = scores(KnnConfig(k=2, m=10, weighting="linear"), [0, 1, 2])
    assert got[1:].tolist() == pytest.approx([0.6, 1.0, 0.6, 0.4, 0.0])


def test_sknn_cosine_and_recent_sample():
    # m = 1: of the sessions sharing an item with [1] (s0, s2) only the most recent, s2, is a candidate
    assert scores(KnnConfig(k=5, m=1, weighting="none"), [0, 1])[1:].tolist() == pytest.approx([1, 0, 0, 0, 1])
    # cosine: [2, 3] vs s0 = 2 / sqrt(2 * 3), vs s1 = 1 / sqrt(2 * 2); item 3 only in s0, 4 only in s1
    got = scores(KnnConfig(k=5, m=10, weighting="none", normalize=True), [2, 3])
    a, b = 2 / math.sqrt(6), 0.5
    assert got[3] / got[2] == pytest.approx(a / (a + b), abs=1e-4)
    assert got[4] / got[2] == pytest.approx(b / (a + b), abs=1e-4)


def test_vmis_per_item_index_by_hand():
    # m = 1: item 1's list holds only s2, item 2's only s1. query [1, 2]: sim s1 = w(2) = 1, s2 = w(1) = 0.5
    got = scores(KnnConfig(k=5, m=1, sampling="per_item", weighting="linear"), [1, 2])
    assert got[1:].tolist() == pytest.approx([0.5, 1.0, 0.0, 1.0, 0.5])  # s0 is never looked at
    # idf: log(3 / sessions with the item); item 2 is in two sessions, 4 in one
    got = scores(KnnConfig(k=5, m=1, sampling="per_item", weighting="linear", idf=True), [1, 2])
    i2, i4 = 1 * math.log(3 / 2), 1 * math.log(3)
    assert got[2] == pytest.approx(i2 / i4, abs=1e-4) and got[4] == 1.0


def test_stan_weights_by_hand():
    train = [np.array([1, 2, 3]), np.array([3, 4])]
    cfg = KnnConfig(k=5, m=10, weighting="exp", lambda_pos=1.0, normalize=True, lambda_recency=1.0, lambda_item=1.0)
    got = knn_scores(fit_index(train, 4), np.array([[1, 3]]), cfg)[0].double().numpy()
    # w(1) = e^-1, w(3) = 1; s0: (e^-1 + 1) / sqrt(2 * 3) x e^-1 (one session older), s1: 1 / sqrt(2 * 2)
    s0 = (math.exp(-1) + 1) / math.sqrt(6) * math.exp(-1)
    s1 = 0.5
    # the most recent query item, 3, sits at position 3 in s0 and 1 in s1: item weights e^-|q - q*|
    want = np.array([0, s0 * math.exp(-2), s0 * math.exp(-1), s0 + s1, s1 * math.exp(-1)])
    assert got[1:] == pytest.approx(want[1:] / want.max(), abs=1e-5)


def test_history_items_and_padding():
    # repeated items count once, at their last position; padding (0) is ignored
    a = scores(KnnConfig(k=2, m=10, weighting="linear"), [0, 0, 2, 1, 2])
    b = scores(KnnConfig(k=2, m=10, weighting="linear"), [0, 0, 0, 1, 2])
    # [2, 1, 2]: w(1) = 2/3, w(2) = 3/3 vs [1, 2]: 1/2, 1 -> the same neighbours s0, s1, other weights
    assert a[2] == b[2] == 1.0 and a[1] == pytest.approx((2 / 3 + 1) / (2 / 3 + 2), abs=1e-4)


@pytest.fixture
def benchmark_dir():
    d = SHARED_DATA / "sessions" / "diginetica-srgnn"
    if not d.exists():
        message = f"{d} is absent: the shared session benchmark is provided beside the project root"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must run this check, not skip it
        pytest.skip(message)
    return d


@pytest.mark.data
def test_tuned_session_knn_beats_last_item_knn_on_validation(benchmark_dir):
    """Item-kNN by the last item only, as the papers' Item-KNN (SR-GNN reports 35.75 / 11.57 on the
    test file; this windowed cosine, which also ranks the last item itself first, is at about 41 / 15
    on this sample): the tuned V-SKNN and VMIS-kNN must be clearly above it. The project's default
    item-kNN (five recent items, decayed) is stronger: below in P@20, above in MRR@20 (docs/results.md)."""
    train, test = load_session_benchmark(benchmark_dir)
    split = session_split(train, test, n_items=43_097)
    sample = split.valid.subset(range(0, len(split.valid), 25))  # ~2,800 cases
    seqs = [u.items for u in split.train]
    scorers = {"last-item knn": itemknn_scorer(seqs, split.train_counts, 43_097, n_recent=1),
               "vsknn": baseline_scorer("vsknn", split, 43_097), "vmis": baseline_scorer("vmis", split, 43_097)}
    got = {}
    for name, scorer in scorers.items():
        r = evaluate_scorer(scorer, sample, 43_097, protocols=("sessions",))["sessions"]
        got[name] = (round(r["p@20_pct"], 2), round(r["mrr@20_pct"], 2))
    for name in ("vsknn", "vmis"):
        assert got[name][0] > got["last-item knn"][0] + 3 and got[name][1] > got["last-item knn"][1] + 1, got
