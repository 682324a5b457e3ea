"""The MMR category re-ranking: λ = 0 is the plain top-k, hand-worked orders, batch = per-list."""
import math

import numpy as np
import pytest

from serving.model.rerank import mmr_order, mmr_order_batch

SCORES = [10.0, 9.0, 8.0, 5.0, 0.0]
CATS = ["a", "a", "a", "b", "c"]


def test_lambda_zero_is_the_plain_top_k_even_when_scores_are_unsorted():
    assert mmr_order(SCORES, CATS, 0.0) == [0, 1, 2, 3, 4]
    assert mmr_order(SCORES, CATS, 0.0, k=3) == [0, 1, 2]
    assert mmr_order([1.0, 5.0, 3.0], ["a", "b", "c"], 0.0) == [0, 1, 2]  # returned as given, untouched
    got = mmr_order_batch(np.array([SCORES, [1.0, 5.0, 3.0, 2.0, 0.0]]), np.ones((2, 5), dtype=int), 0.0, k=4)
    assert got.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_hand_worked_orders():
    # rel = [1, 0.9, 0.8, 0.5, 0]
    # λ = 0.2: after a: a-items 0.8·0.9 - 0.2 = 0.52, 0.8·0.8 - 0.2 = 0.44; b 0.8·0.5 = 0.4; c 0
    #   -> 1 (0.52); then 2 (0.44) over 3 (0.40); then 3; then 4
    assert mmr_order(SCORES, CATS, 0.2) == [0, 1, 2, 3, 4]
    # λ = 0.5: after a: a-items 0.45 - 0.5 < 0, b 0.25, c 0 -> 3; then a-items -0.05, -0.1 vs c 0 -> 4; then 1, 2
    assert mmr_order(SCORES, CATS, 0.5) == [0, 3, 4, 1, 2]
    # λ = 1: one per new category in score order, then the rest in score order
    assert mmr_order(SCORES, CATS, 1.0) == [0, 3, 4, 1, 2]
    assert mmr_order(SCORES, CATS, 0.5, k=2) == [0, 3]


def test_unknown_categories_are_never_penalised_and_invalid_scores_come_last():
    assert mmr_order([3.0, 2.0, 1.0], [None, None, "x"], 1.0) == [0, 1, 2]
    assert mmr_order([3.0, -math.inf, 2.0, 1.0], ["a", "b", "a", "c"], 1.0) == [0, 3, 2, 1]
    assert mmr_order([2.0, 2.0, 2.0], ["a", "a", "b"], 0.3) == [0, 2, 1]  # equal scores: rel 1 for all
    assert mmr_order([], [], 0.5) == []


def test_lambda_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError):
        mmr_order([1.0], ["a"], 1.5)
    with pytest.raises(ValueError):
        mmr_order_batch(np.zeros((1, 1)), np.zeros((1, 1), dtype=int), -0.1)


@pytest.mark.parametrize("lam", [0.0, 0.1, 0.3, 0.5, 0.7, 1.0])
def test_the_batched_form_matches_the_per_list_form(lam):
    rng = np.random.default_rng(7)
    B, P = 40, 30
    scores = rng.normal(size=(B, P)).round(1)  # rounding makes ties
    scores[rng.random((B, P)) < 0.1] = -np.inf
    cats = rng.integers(0, 5, size=(B, P))  # 0 = unknown
    got = mmr_order_batch(scores, cats, lam, k=12)
    for b in range(B):
        order = np.argsort(-scores[b], kind="stable")  # the pool best first, as both callers give it
        s, c = scores[b, order], cats[b, order]
        expected = mmr_order(s.tolist(), [None if x == 0 else int(x) for x in c], lam, k=12)
        assert mmr_order_batch(s[None], c[None], lam, k=12)[0].tolist() == expected
        assert len(set(got[b].tolist())) == 12  # distinct columns


def test_diversity_grows_with_lambda_on_a_random_pool():
    rng = np.random.default_rng(3)
    scores = np.sort(rng.normal(size=(200, 50)), axis=1)[:, ::-1].copy()
    cats = rng.integers(1, 8, size=(200, 50))
    distinct = []
    for lam in (0.0, 0.2, 0.5, 1.0):
        top = mmr_order_batch(scores, cats, lam, k=10)
        distinct.append(np.mean([len(set(cats[b, top[b]])) for b in range(200)]))
    best = np.mean([len(set(cats[b])) for b in range(200)])  # every category the pool has (≤ 7 < 10)
    assert distinct == sorted(distinct) and distinct[0] < best and distinct[-1] == best
