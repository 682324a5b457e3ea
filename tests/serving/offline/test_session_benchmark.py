"""The session benchmark's files, prefix expansion, validation split and protocol on hand-made data."""
import math

import numpy as np
import pytest
import torch

from serving.offline.data import benchmark_test_sessions, load_benchmark_test_sessions, load_session_benchmark
from serving.offline.evaluate import POOL, evaluate_scorer, evaluate_sessions, mixed_scorer
from serving.offline.sequences import EvalSet, prefix_cases, session_split


def _write(d, train, test):
    (d / "train.txt").write_text("".join(" ".join(map(str, s)) + "\n" for s in train))
    (d / "test.txt").write_text("".join(" ".join(map(str, s)) + "\n" for s in test))


def test_loader_and_prefix_expansion_counts(tmp_path):
    _write(tmp_path, [[1, 2, 3], [4, 5], [2, 2, 6, 1]], [[1, 2], [3, 4, 5]])
    train, test = load_session_benchmark(tmp_path)
    assert [s.tolist() for s in train] == [[1, 2, 3], [4, 5], [2, 2, 6, 1]]
    ev = prefix_cases(train)
    assert len(ev) == 2 + 1 + 3  # n - 1 cases per session
    assert [h.tolist() for h in ev.items[:3]] == [[1], [1, 2], [4]] and ev.targets[:3] == [2, 3, 5]
    assert ev.items[-1].tolist() == [2, 2, 6] and ev.targets[-1] == 1


def test_validation_is_the_end_of_the_training_period_and_disjoint():
    train = [np.array([i, i + 1, i + 2]) for i in range(1, 11)]  # sessions 0..9 in time order
    test = [np.array([3, 4, 5]), np.array([7, 8])]
    sp = session_split(train, test, n_items=12, valid_fraction=0.2)
    assert [u.key for u in sp.train] == [f"s{r}" for r in range(8)]  # the first 80 %
    # validation: every prefix of sessions 8 and 9 (2 cases each), all later than any training session
    assert len(sp.valid) == 4 and sp.valid.targets == [10, 11, 11, 12]
    assert sp.valid.items[1].tolist() == [9, 10]
    fit_rows = {u.items.tobytes() for u in sp.train}
    assert not any(s.tobytes() in fit_rows for s in train[8:])
    assert sp.train_counts[9] == 2 and sp.train_counts[12] == 0  # popularity from the fit part only
    assert len(sp.refit) == 10  # the test figure is fit on every training session
    assert sp.test.targets == [5, 8] and sp.test.items[0].tolist() == [3, 4]


class TableScorer:
    def __init__(self, table):
        self.table = torch.tensor(table, dtype=torch.float32)
        self.max_len = 50

    def __call__(self, items, types):
        return self.table.unsqueeze(0).expand(items.shape[0], -1).clone()


def _ev(histories, targets):
    return EvalSet([str(i) for i in range(len(targets))], [np.array(h) for h in histories],
                   [np.ones(len(h), np.int64) for h in histories], targets, [np.array(h) for h in histories])


def test_sessions_protocol_keeps_history_and_reports_percent():
    n = 100
    scorer = TableScorer(np.arange(n + 1, dtype=np.float32))  # item i scores i: rank of i is n - i
    # a repeat of the history at rank 0, rank 3, rank 19, rank 20 (a miss at 20), rank 60 (beyond the pool)
    ev = _ev([[100, 5], [1], [7], [7], [7]], [100, 97, 81, 80, 40])
    res = evaluate_scorer(scorer, ev, n, protocols=("sessions",))["sessions"]
    assert res["mrr@20"] == pytest.approx((1 + 1 / 4 + 1 / 20) / 5)
    assert res["hr@20"] == pytest.approx(3 / 5) and res["p@20_pct"] == pytest.approx(60.0)
    assert res["mrr@20_pct"] == pytest.approx(100 * res["mrr@20"])
    assert res["hr@10"] == pytest.approx(2 / 5)
    assert res["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5)) / 5)
    assert POOL < 60  # the last target is outside the pool and still a miss


def test_sessions_protocol_ties_at_the_pool_edge_are_ranked_on_the_whole_row():
    n = 100
    table = np.zeros(n + 1, dtype=np.float32)
    table[1:11] = 2.0  # ten items above 70 tied items at the pool's edge
    table[11:81] = 1.0
    ev = _ev([[1]] * 2000, [50] * 2000)
    res = evaluate_scorer(TableScorer(table), ev, n, protocols=("sessions",))["sessions"]
    # rank = 10 + uniform share of the 69 other ties: 0..69 -> P(rank < 20) = 10 / 70
    assert res["hr@20"] == pytest.approx(10 / 70, abs=0.03)


def test_evaluate_sessions_cli_path_on_tiny_files(tmp_path):
    train = [[1, 2, 3], [2, 3, 4], [1, 2, 3], [3, 4, 5], [1, 2, 3], [2, 3, 4], [1, 2, 3], [2, 3, 4], [1, 2, 3],
             [1, 2, 3]]
    _write(tmp_path, train, [[1, 2, 3], [2, 3, 4]])
    res = evaluate_sessions("vsknn", tmp_path, "test")
    assert res["users"] == 2 and res["p@20_pct"] == 100.0 and res["model"] == "vsknn"
    assert evaluate_sessions("itemknn", tmp_path, "valid")["users"] == 2  # the last session's 2 prefixes


def test_test_sessions_rebuilt_from_the_lines_give_back_exactly_the_test_cases(tmp_path):
    # three sessions cut as the benchmark cuts them (longest line first), the third a prefix of the
    # first one's items: a shorter line starts a new session unless it continues the line before
    lines = [[5, 6, 7, 8], [5, 6, 7], [5, 6], [9, 9], [5, 6, 7], [5, 6]]
    sessions = benchmark_test_sessions([np.array(line) for line in lines])
    assert [s.tolist() for s in sessions] == [[5, 6, 7, 8], [9, 9], [5, 6, 7]]
    cases = prefix_cases(sessions)
    assert sorted((tuple(i.tolist()), t) for i, t in zip(cases.items, cases.targets)) == \
        sorted((tuple(line[:-1]), line[-1]) for line in lines)
    _write(tmp_path, [[1, 2]], lines)
    replay = load_benchmark_test_sessions(tmp_path)
    assert [s.session_id for s in replay] == ["t0", "t1", "t2"] and replay[0].items == ["5", "6", "7", "8"]
    assert all(x.event_type == "view" for s in replay for x in s.interactions)
    assert all(a.ts < b.ts for s in replay for a, b in zip(s.interactions, s.interactions[1:]))


def test_mixed_scorer_is_a_weighted_sum_of_two_distributions():
    model = TableScorer(np.log([1e-30, 0.5, 0.3, 0.2]))  # log-probabilities, column 0 is padding
    knn = TableScorer(np.array([0.0, 0.0, 1.0, 3.0]))
    got = mixed_scorer(model, knn, 0.25)(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
    assert got[0, 1:].tolist() == pytest.approx([0.75 * 0.5, 0.75 * 0.3 + 0.25 * 0.25, 0.75 * 0.2 + 0.25 * 0.75])


def test_train_cli_on_the_session_benchmark_files(tmp_path):
    """--format sessions: trained on the files' split, the epoch picked by validation MRR@20, the kNN
    mix weight chosen on validation, test figures of the model and the mix."""
    import json

    from typer.testing import CliRunner

    from serving.offline.train import MIX_WEIGHTS
    from serving.offline.train import cli as train_cli

    rng = np.random.default_rng(0)
    train = [rng.integers(1, 31, rng.integers(2, 7)).tolist() for _ in range(300)]
    _write(tmp_path, train, [rng.integers(1, 31, rng.integers(2, 6)).tolist() for _ in range(50)])
    out = tmp_path / "model"
    res = CliRunner().invoke(train_cli, ["--format", "sessions", "--data", str(tmp_path), "--out", str(out),
                                         "--epochs", "2", "--refit-epochs", "1", "--mix-with", "vsknn",
                                         "--threads", "1", "--d-model", "16", "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "config.json").read_text())["training"]
    assert [r["epoch"] for r in summary["history"]] == [1, 2] and "val_mrr@20_pct" in summary["history"][0]
    assert summary["valid"]["sessions"]["users"] == sum(len(s) - 1 for s in train[-30:])  # every validation case
    assert summary["test"]["sessions"]["users"] == 50 and summary["mix"]["test"]["users"] == 50
    assert [r["weight"] for r in summary["mix"]["grid"]] == list(MIX_WEIGHTS)
    assert summary["mix"]["weight"] in MIX_WEIGHTS and summary["refit"][0]["refit_epoch"] == 1
    # the trained model on the same files, as the live replay compares it (tools.live_quality)
    served = evaluate_sessions(None, tmp_path, "test", "served", model=out)
    assert served["users"] == 50 and served["model"] == str(out) and 0 <= served["mrr@10"] <= served["hr@10"]
