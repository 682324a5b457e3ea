"""Metric math, tie handling, negative sampling and the two protocols on hand-made data."""
import math

import numpy as np
import pytest
import torch

from serving.offline import exposure
from serving.offline import ranking_metrics as metrics
from serving.offline.evaluate import evaluate_scorer, itemknn_similarity, popular_scorer
from serving.offline.sequences import Encoded, EvalSet, leave_last_out, sample_negatives, training_windows


def test_metrics_on_hand_made_ranks():
    ranks = [0, 1, 4, 9, 19, 50]
    assert metrics.hit_rate(ranks, 1) == pytest.approx(1 / 6)
    assert metrics.hit_rate(ranks, 5) == pytest.approx(3 / 6)
    assert metrics.hit_rate(ranks, 10) == pytest.approx(4 / 6)
    assert metrics.hit_rate(ranks, 20) == pytest.approx(5 / 6)
    assert metrics.ndcg(ranks, 5) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 6)
    assert metrics.ndcg(ranks, 10) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11)) / 6)
    assert metrics.mrr(ranks, 20) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10 + 1 / 20) / 6)
    assert metrics.summarize(ranks)["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10) / 6)
    assert metrics.ndcg([0], 10) == 1.0 and metrics.mrr([0], 1) == 1.0
    assert metrics.hit_rate([math.inf], 10) == 0.0 and metrics.ndcg([math.inf], 10) == 0.0
    s = metrics.summarize(ranks, top10=[[1, 2, 3], [3, 4, 0]], n_items=8)
    assert s["coverage@10"] == pytest.approx(4 / 8)
    assert s["users"] == 6
    assert set(s) == {"hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr@10", "mrr@20", "coverage@10",
                      "users"}


def test_target_ranks_counts_higher_and_breaks_ties_at_random():
    scores = torch.tensor([[0.1, 0.5, 0.9, 0.3], [1.0, 1.0, 1.0, 1.0]])
    # row 0: target 0.5 -> one candidate (0.9) is higher, no ties
    r = metrics.target_ranks(scores[:1], torch.tensor([0.5]), exclude_target=torch.tensor([1]))
    assert r.tolist() == [1]
    # row 1: four-way tie including the target -> uniform over ranks 0..3
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([metrics.target_ranks(scores[1:].expand(1000, -1), torch.ones(1000), g,
                                            exclude_target=torch.zeros(1000, dtype=torch.long))])
    assert set(draws.tolist()) == {0, 1, 2, 3}
    assert abs(draws.float().mean().item() - 1.5) < 0.15


def test_sampled_negatives_exclude_the_users_items():
    n_items = 12
    rated = [np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), np.array([5]), np.arange(1, 13)]
    neg = sample_negatives(rated, n_items, n=100, seed=3)
    assert neg.shape == (3, 100)
    assert set(neg[0].tolist()) <= {11, 12} and set(neg[0].tolist()) == {11, 12}
    assert 5 not in neg[1] and neg[1].min() >= 1 and neg[1].max() <= 12
    assert (neg[2] == 0).all()  # the user touched everything: no negative exists
    assert (sample_negatives(rated, n_items, 100, seed=3) == neg).all()  # seeded


def test_leave_last_out_split_and_windows():
    users = [Encoded("a", np.array([1, 2, 3, 4, 5]), np.ones(5, dtype=np.int64)),
             Encoded("b", np.array([7, 8]), np.ones(2, dtype=np.int64))]
    sp = leave_last_out(users, n_items=9)
    assert [u.items.tolist() for u in sp.train] == [[1, 2, 3], [7, 8]]
    assert sp.valid.targets == [4] and sp.valid.items[0].tolist() == [1, 2, 3]
    assert sp.test.targets == [5] and sp.test.items[0].tolist() == [1, 2, 3, 4]
    assert sp.test.rated[0].tolist() == [1, 2, 3, 4, 5]
    assert sp.train_counts.tolist() == [0, 1, 1, 1, 0, 0, 0, 1, 1, 0]
    assert [u.items.tolist() for u in sp.refit] == [[1, 2, 3, 4], [7, 8]]  # the validation target too, never 5
    inp, typ, tgt = training_windows(sp.train, max_len=4)
    assert inp.tolist() == [[0, 0, 1, 2], [0, 0, 0, 7]]
    assert tgt.tolist() == [[0, 0, 2, 3], [0, 0, 0, 8]]
    long = [Encoded("c", np.arange(1, 11), np.ones(10, dtype=np.int64))]
    inp, _, tgt = training_windows(long, max_len=4)
    # windows from the end: targets 7..10, then 3..6, then 2; every next-item pair exactly once
    assert tgt.tolist() == [[7, 8, 9, 10], [3, 4, 5, 6], [0, 0, 0, 2]]
    assert inp.tolist() == [[6, 7, 8, 9], [2, 3, 4, 5], [0, 0, 0, 1]]
    inp1, _, _ = training_windows(long, max_len=4, all_windows=False)
    assert inp1.tolist() == [[6, 7, 8, 9]]
    # context 2: each earlier window reaches 2 items further; its overlapping targets are masked
    inp, _, tgt = training_windows(long, max_len=4, context=2)
    assert inp.tolist() == [[6, 7, 8, 9], [4, 5, 6, 7], [2, 3, 4, 5], [0, 1, 2, 3]]
    assert tgt.tolist() == [[7, 8, 9, 10], [5, 6, 0, 0], [3, 4, 0, 0], [0, 2, 0, 0]]
    trained = sorted(t for row in tgt.tolist() for t in row if t)
    assert trained == list(range(2, 11))  # every next-item pair exactly once


class TableScorer:
    """Scores from a fixed table: the same scores for every history."""

    def __init__(self, table):
        self.table = torch.tensor(table, dtype=torch.float32)
        self.max_len = 5

    def __call__(self, items, types):
        return self.table.unsqueeze(0).expand(items.shape[0], -1).clone()


def test_full_protocol_masks_history_but_not_the_target():
    # items 1..6; scores favour 6 > 5 > 4 > 3 > 2 > 1
    scorer = TableScorer([0, 1, 2, 3, 4, 5, 6])
    ev = EvalSet(keys=["u", "v"], items=[np.array([6, 5]), np.array([3, 6])], types=[np.ones(2, np.int64)] * 2,
                 targets=[4, 3], rated=[np.array([4, 5, 6]), np.array([3, 6])])
    res = evaluate_scorer(scorer, ev, n_items=6, protocols=("full",))["full"]
    # u: 6 and 5 are history -> masked, target 4 is first. v: target 3 is a repeat, stays
    # rankable; 6 is masked, 5 and 4 rank above 3 -> rank 2.
    assert res["hr@5"] == 1.0
    assert res["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4)) / 2)
    assert res["mrr@20"] == pytest.approx((1 + 1 / 3) / 2)
    # coverage: top-10 of u is {4,3,2,1}, of v is {5,4,2,1} -> 5 of 6 items
    assert res["coverage@10"] == pytest.approx(5 / 6)


def test_served_protocol_never_counts_the_item_on_screen():
    # items 1..6 scored 6 > 5 > ... > 1. u is on item 6: 6 is not shown, earlier 5 still is, so the
    # target 4 ranks second. v's target is its current item 3, which is never shown: a miss.
    scorer = TableScorer([0, 1, 2, 3, 4, 5, 6])
    ev = EvalSet(keys=["u", "v"], items=[np.array([5, 6]), np.array([6, 3])], types=[np.ones(2, np.int64)] * 2,
                 targets=[4, 3], rated=[np.array([4, 5, 6]), np.array([3, 6])])
    res = evaluate_scorer(scorer, ev, n_items=6, protocols=("served",))["served"]
    assert res["hr@5"] == 0.5
    assert res["mrr@20"] == pytest.approx(1 / 2 / 2)


def test_sampled_protocol_ranks_against_unseen_negatives_only():
    n_items = 300
    table = np.zeros(n_items + 1)
    table[1:] = np.arange(1, n_items + 1)  # item i scores i
    scorer = TableScorer(table)
    # history = the top items 291..300: they must not be negatives, so the target 290 is first
    ev = EvalSet(keys=["u"], items=[np.arange(291, 301)], types=[np.ones(10, np.int64)], targets=[290],
                 rated=[np.arange(290, 301)])
    res = evaluate_scorer(scorer, ev, n_items, protocols=("sampled100",))["sampled100"]
    assert res["hr@5"] == 1.0 and res["ndcg@5"] == 1.0
    # a low-scoring target is beaten by nearly all 100 negatives
    ev.targets = [1]
    ev.rated = [np.concatenate([[1], np.arange(291, 301)])]
    res = evaluate_scorer(scorer, ev, n_items, protocols=("sampled100",))["sampled100"]
    assert res["hr@20"] == 0.0


def test_popular_and_itemknn_baselines():
    counts = np.array([0, 5, 1, 9, 0])
    s = popular_scorer(counts)(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    assert s.shape == (2, 5) and s[0].argmax().item() == 3 and s[0, 0] == float("-inf")
    sim = itemknn_similarity([np.array([1, 2, 1, 2]), np.array([3, 4])], n_items=4, window=1).to_dense()
    # c(1)=2, c(2)=2, pair (1,2) occurs 3 times in a window of 1 -> 3/2
    assert sim[1, 2].item() == pytest.approx(1.5) and sim[2, 1].item() == pytest.approx(1.5)
    assert sim[3, 4].item() == pytest.approx(1.0) and sim[1, 3].item() == 0.0
    assert sim[1, 1].item() == 1.0


def test_exposure_metrics_sit_next_to_the_ranking_metrics():
    scorer = TableScorer([0, 1, 2, 3, 4, 5, 6])
    ev = EvalSet(keys=["u", "v"], items=[np.array([6, 5]), np.array([3, 6])], types=[np.ones(2, np.int64)] * 2,
                 targets=[4, 3], rated=[np.array([4, 5, 6]), np.array([3, 6])])
    cats = np.array([0, 1, 1, 2, 2, 3, 0])
    counts = np.array([0, 0, 0, 1, 1, 1, 9])
    res = evaluate_scorer(scorer, ev, n_items=6, protocols=("full",), item_category=cats, train_counts=counts)["full"]
    # lists: u {4,3,2,1}, v {5,4,2,1}: slots per item 1..6 = [2, 2, 1, 2, 1, 0]
    assert res["gini@10"] == pytest.approx(exposure.gini([2, 2, 1, 2, 1, 0]))
    assert res["coverage@10"] == pytest.approx(5 / 6)
    # head = ceil(1.2) = 2 items: 6 (count 9), then 3 (count 1, lowest index among ties); 3 fills 1 of 8 slots
    assert res["long_tail@10"] == pytest.approx(7 / 8)
    # u: categories 2,2,1,1 -> 4 of 6 pairs differ; v: 3,2,1,1 -> 5 of 6
    assert res["category_diversity@10"] == pytest.approx((4 / 6 + 5 / 6) / 2)
    assert res["novelty@10"] == pytest.approx(exposure.novelty([[4, 3, 2, 1], [5, 4, 2, 1]], counts))


def test_diversity_reranks_the_pools_and_zero_changes_nothing():
    # items 1..6 scored 6 > 5 > ... > 1; categories: 6, 5, 4 in one, 3 alone, 2 and 1 in a third
    scorer = TableScorer([0, 1, 2, 3, 4, 5, 6])
    cats = np.array([0, 3, 3, 2, 1, 1, 1])
    ev = EvalSet(keys=["u", "v"], items=[np.array([1]), np.array([2, 3])], types=[np.ones(1, np.int64),
                 np.ones(2, np.int64)], targets=[3, 3], rated=[np.array([1, 3]), np.array([2, 3])])
    plain = evaluate_scorer(scorer, ev, n_items=6, item_category=cats, train_counts=np.ones(7, np.int64))
    assert evaluate_scorer(scorer, ev, n_items=6, item_category=cats, train_counts=np.ones(7, np.int64),
                           diversity=0.0) == plain
    diverse = evaluate_scorer(scorer, ev, n_items=6, item_category=cats, train_counts=np.ones(7, np.int64),
                              diversity=1.0)
    # full, u: plain 6 5 4 3 2 -> target 3 at rank 3; λ = 1: 6 3 2 5 4 -> rank 1
    # full, v (history 2, 3; the target 3 is a repeat and put back): plain 6 5 4 3 1 -> rank 3; λ = 1: 6 3 1 5 4
    assert plain["full"]["mrr@20"] == pytest.approx(1 / 4) and diverse["full"]["mrr@20"] == pytest.approx(1 / 2)
    # served, v: the target is the item on screen: a miss whatever the order
    assert diverse["served"]["mrr@20"] == pytest.approx(1 / 2 / 2)
    with pytest.raises(ValueError):
        evaluate_scorer(scorer, ev, n_items=6, diversity=0.5)  # no categories to diversify on


def test_diversity_changes_which_items_make_the_top_10():
    # items 1..12 scored by index; 3..12 share category 1, 2 and 1 have categories 2 and 3; 3 is history
    scorer = TableScorer(list(range(13)))
    cats = np.array([0, 3, 2] + [1] * 10)
    ev = EvalSet(keys=["u"], items=[np.array([3])], types=[np.ones(1, np.int64)], targets=[1],
                 rated=[np.array([1, 3])])
    kw = dict(n_items=12, protocols=("full",), item_category=cats)
    plain = evaluate_scorer(scorer, ev, **kw)["full"]
    diverse = evaluate_scorer(scorer, ev, diversity=1.0, **kw)["full"]
    # plain top 10: 12..4 (category 1) and 2 -> 9 of 45 pairs differ; the target 1 is 11th
    assert plain["category_diversity@10"] == pytest.approx(9 / 45) and plain["hr@10"] == 0.0
    # λ = 1: 12, 2, 1, then 11..5 -> 8·2 + 1 = 17 of 45 pairs differ; the target is 3rd
    assert diverse["category_diversity@10"] == pytest.approx(17 / 45) and diverse["mrr@20"] == pytest.approx(1 / 3)
    assert plain["coverage@10"] == diverse["coverage@10"] == pytest.approx(10 / 12)
