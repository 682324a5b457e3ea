from serving.offline.evaluate import PROTOCOLS
from serving.offline.results_table import COLUMNS, cell, mean_rows


def test_seeds_are_summarised_as_mean_and_sample_spread_per_protocol():
    rows = [(f"seed {s}", p, {c: (100 if c == "users" else v) for c in COLUMNS}, "t")
            for s, v in enumerate((0.1, 0.2, 0.3)) for p in PROTOCOLS]
    summary = mean_rows(rows)
    assert [p for _, p, _, _ in summary] == list(PROTOCOLS)
    _, _, metrics, _ = summary[0]
    assert metrics["ndcg@10"] == "0.2000 ± 0.1000" and metrics["users"] == 100
    assert cell(metrics, "ndcg@10") == "0.2000 ± 0.1000" and cell({"hr@10": 0.12345}, "hr@10") == "0.1235"

