"""The compression table: the rule that picks the served precision, the JSON lines, and one small
end-to-end measurement of every precision."""
import json

import torch

from serving.model.artifacts import Vocab, save_model_dir
from serving.model.transformer import ModelConfig, SessionTransformer
from serving.offline import compress
from serving.offline.data import generate_synthetic


def row(dataset, precision, ndcg, b64_ms, supported=True):
    return {"dataset": dataset, "precision": precision, "supported": supported, "full_ndcg@10": ndcg,
            "b64_ms": b64_ms, "b1_ms": b64_ms / 10}


def test_the_fastest_variant_within_one_percent_on_every_file_is_served():
    rows = [row("a", "fp32", 0.50, 10.0), row("a", "bf16", 0.499, 6.0), row("a", "fp16", 0.50, 30.0),
            row("a", "int8", 0.497, 8.0),
            row("b", "fp32", 0.30, 20.0), row("b", "bf16", 0.2960, 12.0), row("b", "fp16", 0.30, 60.0),
            row("b", "int8", 0.2995, 16.0)]
    served, reasons = compress.choose(rows)
    assert served == "int8"  # bf16 is faster but loses 1.33% on file b
    assert reasons["bf16"].startswith("full NDCG@10 loss 1.33%")
    assert "0.80x at batch 64" in reasons["int8"] and "3.00x at batch 64" in reasons["fp16"]
    # Faster at batch 64 but slower at batch 1 (light traffic) does not count as faster.
    slow_alone = [dict(r, b1_ms=r["b1_ms"] * 1.3) if r["precision"] in ("int8", "bf16") else r for r in rows]
    assert compress.choose(slow_alone)[0] == "fp32"

    rows[7] = row("b", "int8", 0.20, 16.0)  # now every faster variant loses too much
    assert compress.choose(rows)[0] == "fp32"
    rows[6] = row("b", "fp16", 0.30, 60.0, supported=False)
    assert compress.choose(rows)[1]["fp16"] == "not run or not supported on every file"
    assert compress.choose([row("a", "fp32", 0.5, 10.0), row("a", "int8", 0.5, 10.0)])[0] == "fp32"  # a tie
    assert compress.choose([row("a", "int8", 0.5, 1.0)])[0] == "fp32"  # no baseline: nothing to compare


def test_measure_writes_one_row_per_precision_and_replaces_a_datasets_rows(tmp_path):
    sessions = generate_synthetic(150, n_items=60, n_categories=5, seed=2)
    torch.manual_seed(0)
    vocab = Vocab.build(sessions)
    model = SessionTransformer(ModelConfig(n_items=vocab.n_items, n_categories=vocab.n_categories, max_len=10,
                                           d_model=16, n_layers=1, n_heads=2, dropout=0.0)).eval()
    model.item_category = vocab.category_of_index()
    save_model_dir(tmp_path / "m", model, vocab, {"train_seconds": 1.5, "best_epoch": 1, "epochs_run": 2})
    rows = compress.measure(tmp_path / "m", "synthetic", None, "tiny", repeats=2, rounds=1, sessions=150, data_seed=2,
                            faithfulness_n=50, log=lambda *_: None)
    assert [r["precision"] for r in rows] == list(compress.PRECISIONS)
    by = {r["precision"]: r for r in rows}
    for r in rows:
        if not r["supported"]:
            assert r["error"]
            continue
        assert {"full_ndcg@10", "sampled100_ndcg@10", "b1_ms", "b64_ms", "faithfulness", "state_bytes"} <= set(r)
        assert r["threads"] == 1 and r["train_seconds"] == 1.5 and r["window"] == 10
    assert by["fp32"]["full_ndcg@10_change"] == 0 and by["fp32"]["top10_overlap"] == 1.0
    assert len(by["int8"]["int8_linears"]) == 4 + 3  # qkv, proj, two feed-forward; copy_q, copy_k, copy_gate
    assert by["fp32"]["int8_linears"] == []

    path = tmp_path / "c.jsonl"
    compress.write_rows(path, [{"dataset": "other", "precision": "fp32"}] + rows)
    compress.write_rows(path, rows[:1])
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["dataset"], r["precision"]) for r in kept] == [("other", "fp32"), ("tiny", "fp32")]
    table = compress.markdown(rows)
    assert table.count("\n") == 1 + len(rows) and "| tiny | int8 |" in table
