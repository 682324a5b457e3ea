"""Exposure and diversity metrics on hand-computed examples."""
import math

import numpy as np
import pytest

from serving.offline import exposure as ex
from serving.offline import ranking_metrics


def test_gini_of_equal_exposure_is_zero_and_of_one_item_is_n_minus_one_over_n():
    assert ex.gini([3, 3, 3, 3]) == pytest.approx(0.0)
    assert ex.gini([0, 0, 7, 0, 0]) == pytest.approx(4 / 5)
    assert ex.gini([0, 0, 0]) == 0.0 and ex.gini([]) == 0.0
    # [0, 1, 2, 3]: 2·(1·0 + 2·1 + 3·2 + 4·3) / (4·6) - 5/4 = 40/24 - 30/24
    assert ex.gini([3, 0, 2, 1]) == pytest.approx(10 / 24)


def test_gini_counts_every_catalogue_item_zeros_included():
    lists = [[1, 2], [1, 2]]  # items 1 and 2 twice each, items 3 and 4 never
    counts = ex.exposure_counts(lists, 4)
    assert counts.tolist() == [0, 2, 2, 0, 0]
    # [0, 0, 2, 2]: 2·(3·2 + 4·2) / (4·4) - 5/4 = 28/16 - 20/16
    assert ex.exposure_metrics(lists, 4, np.zeros(5))["gini"] == pytest.approx(0.5)


def test_coverage_matches_coverage_at_10_and_ignores_empty_slots():
    lists = [[1, 2, 3], [3, 4, 0]]
    assert ex.coverage(lists, 8) == pytest.approx(4 / 8) == ranking_metrics.coverage(lists, 8)
    assert ex.coverage([], 8) == 0.0


def test_long_tail_share_uses_the_top_20_percent_by_training_popularity():
    counts = np.array([0, 50, 40, 1, 1, 1, 1, 1, 1, 30, 2])  # 10 items: the head is items 1 and 2
    assert ex.head_items(counts).nonzero()[0].tolist() == [1, 2]
    lists = [[1, 2, 9, 10], [1, 3, 0, 0]]  # 6 filled slots, 3 of them (9, 10, 3) in the tail
    assert ex.long_tail_share(lists, counts) == pytest.approx(3 / 6)
    ties = np.array([0, 5, 5, 5, 5, 5])  # 5 items: ceil(1) = 1 head item, the lowest index
    assert ex.head_items(ties).nonzero()[0].tolist() == [1]


def test_category_diversity_skips_unknown_categories():
    cats = np.array([0, 1, 1, 2, 0, 3])  # item 4 has no category
    # [1, 2, 3]: categories 1,1,2 -> pairs (1,2) same, (1,3) (2,3) differ = 2/3
    # [1, 3, 5]: 1,2,3 -> 3/3;  [1, 4, 0]: one known item -> left out;  [2, 4, 3]: 1,2 -> 1/1
    lists = [[1, 2, 3], [1, 3, 5], [1, 4, 0], [2, 4, 3]]
    assert ex.category_diversity(lists, cats) == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert ex.category_diversity([[1, 2]], cats) == 0.0
    assert "category_diversity" not in ex.exposure_metrics(lists, 5, np.zeros(6), np.zeros(6, dtype=int))


def test_novelty_is_the_mean_self_information_with_add_one_smoothing():
    counts = np.array([0, 6, 1, 0])  # total 7, 3 items: p = (c + 1) / 10
    lists = [[1, 2], [3, 0]]
    expected = (-math.log2(7 / 10) - math.log2(2 / 10) - math.log2(1 / 10)) / 3
    assert ex.novelty(lists, counts) == pytest.approx(expected)
    assert ex.novelty([[0, 0]], counts) == 0.0


def test_exposure_metrics_names():
    m = ex.exposure_metrics([[1, 2]], 3, np.array([0, 1, 1, 1]), np.array([0, 1, 2, 1]))
    assert set(m) == {"coverage", "gini", "long_tail_share", "novelty", "category_diversity"}
    assert m["category_diversity"] == 1.0 and m["coverage"] == pytest.approx(2 / 3)
