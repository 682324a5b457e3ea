"""SessionTransformer: shapes, padding, causality, artifacts round trip."""
import json

import pytest
import torch

from serving.model.artifacts import Vocab, load_model_dir, save_model_dir
from serving.model.transformer import EVENT_TYPE_INDEX, ModelConfig, SessionTransformer


def make(n_items=30, n_categories=0, **kw):
    torch.manual_seed(0)
    return SessionTransformer(ModelConfig(n_items=n_items, n_categories=n_categories, max_len=8, d_model=16,
                                          n_heads=2, n_layers=2, **kw)).eval()


def test_event_type_index():
    assert EVENT_TYPE_INDEX == {"view": 1, "click": 2, "add_to_cart": 3, "purchase": 4}


def test_config_round_trip_ignores_training_metadata():
    cfg = ModelConfig(n_items=10, n_categories=3)
    d = cfg.to_dict() | {"training": {"epochs": 3}}
    assert ModelConfig.from_dict(d) == cfg
    assert ModelConfig(n_items=5).n_event_types == 5


def test_shapes_padding_column_and_no_nan_on_padded_rows():
    m = make()
    items = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8]])
    types = (items > 0).long()
    h = m(items, types)
    assert h.shape == (3, 8, 16)
    assert torch.isfinite(h).all()
    logits = m.score_last(items, types)
    assert logits.shape == (3, 31)
    assert torch.isinf(logits[:, 0]).all() and (logits[:, 0] < 0).all()
    assert torch.isfinite(logits[:, 1:]).all()
    # also in training mode (dropout) and through the backward pass
    m.train()
    loss = m.score_last(items, types)[:, 1:].logsumexp(1).sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_left_padding_is_ignored_and_attention_is_causal():
    m = make()
    items = torch.tensor([[0, 0, 0, 7, 8, 9]])
    types = torch.tensor([[0, 0, 0, 1, 2, 1]])
    short = m(items[:, 3:], types[:, 3:])
    longer = m(items, types)
    torch.testing.assert_close(longer[:, 3:], short, atol=1e-5, rtol=1e-5)
    # changing the latest item does not change earlier hidden states
    changed = items.clone()
    changed[0, -1] = 3
    torch.testing.assert_close(m(changed, types)[:, :-1], longer[:, :-1])
    assert not torch.allclose(m(changed, types)[:, -1], longer[:, -1])
    # event types matter
    assert not torch.allclose(m(items, torch.tensor([[0, 0, 0, 1, 2, 4]]))[:, -1], longer[:, -1])


def test_longer_than_max_len_keeps_the_most_recent():
    m = make()
    items = torch.arange(1, 13).unsqueeze(0)
    types = torch.ones_like(items)
    torch.testing.assert_close(m.score_last(items, types), m.score_last(items[:, -8:], types[:, -8:]))


def test_categories_default_to_the_item_category_buffer():
    m = make(n_categories=4)
    m.item_category.copy_(torch.arange(31) % 5)
    items = torch.tensor([[0, 2, 3, 4]])
    types = torch.ones_like(items)
    torch.testing.assert_close(m.score_last(items, types), m.score_last(items, types, m.item_category[items]))
    assert not torch.allclose(m.score_last(items, types), m.score_last(items, types, torch.zeros_like(items)))


def test_save_and_load_model_dir(tmp_path):
    m = make(n_items=3, n_categories=2)
    vocab = Vocab(["a", "b", "c"], ["x", "y"], {"a": "x", "c": "y"}, [5, 0, 2])
    m.item_category.copy_(vocab.category_of_index())
    save_model_dir(tmp_path / "m", m, vocab, {"epochs": 1})
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "weights.pt", "vocab.json"}
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["n_items"] == 3 and cfg["training"] == {"epochs": 1}
    m2, v2 = load_model_dir(tmp_path / "m")
    assert not m2.training
    items = torch.tensor([[1, 3, 2]])
    types = torch.ones_like(items)
    torch.testing.assert_close(m2.score_last(items, types), m.score_last(items, types))
    assert v2.encode_item("b") == 2 and v2.encode_item("zzz") == 0 and v2.decode(3) == "c"
    assert v2.item_category == {"a": "x", "c": "y"} and v2.popularity == {"a": 5, "b": 0, "c": 2}
    assert v2.category_of_index().tolist() == [0, 1, 0, 2]
    assert v2.popularity_array().tolist() == [0.0, 5.0, 0.0, 2.0]
    with pytest.raises(IndexError):
        v2.decode(0)


def test_copy_head_scores_are_log_probabilities():
    m = make()
    items = torch.tensor([[0, 0, 4, 4, 9], [1, 2, 3, 4, 5]])
    scores = m.score_last(items, (items > 0).long())
    torch.testing.assert_close(scores[:, 1:].exp().sum(1), torch.ones(2))
    plain = make(copy_head=False)
    h = plain(items, (items > 0).long())[:, -1]
    torch.testing.assert_close(plain.score_last(items, (items > 0).long()), plain.logits(h))


def test_model_dirs_written_before_the_copy_head_still_load(tmp_path):
    m = make(n_items=3, copy_head=False)
    save_model_dir(tmp_path / "old", m, Vocab(["a", "b", "c"]))
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    del cfg["copy_head"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    m2, _ = load_model_dir(tmp_path / "old")
    assert m2.cfg.copy_head is False
