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


def test_logit_scale_scores_are_the_scaled_cosine_and_train_on_them():
    m = make(copy_head=False, logit_scale=16.0)
    items = torch.tensor([[0, 0, 4, 4, 9], [1, 2, 3, 4, 5]])
    types = (items > 0).long()
    h = m(items, types)
    cosine = torch.nn.functional.cosine_similarity(h[:, -1, None, :], m.item_emb.weight[None, 1:, :], dim=-1)
    torch.testing.assert_close(m.score_last(items, types)[:, 1:], 16.0 * cosine)
    targets = torch.tensor([[0, 0, 4, 9, 7], [2, 3, 4, 5, 6]])
    keep = targets > 0
    expected = torch.nn.functional.cross_entropy(m.logits(h[keep])[:, 1:], targets[keep] - 1)
    torch.testing.assert_close(m.loss(items, types, targets), expected)


def test_model_dirs_written_before_the_copy_head_still_load(tmp_path):
    m = make(n_items=3, copy_head=False)
    save_model_dir(tmp_path / "old", m, Vocab(["a", "b", "c"]))
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    del cfg["copy_head"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    m2, _ = load_model_dir(tmp_path / "old")
    assert m2.cfg.copy_head is False


def test_the_pieces_compose_to_forward():
    """embed, attention_mask, Block.qkv/finish and final_ln, run by hand, are forward (eval mode)."""
    m = make(n_categories=4, copy_head=True)
    with torch.no_grad():
        m.item_category.copy_(torch.randint(0, 5, (31,)))
    items = torch.tensor([[0, 0, 0, 4, 9, 9, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8]])
    types = torch.tensor([[0, 0, 0, 1, 1, 2, 1, 3], [1, 1, 1, 1, 2, 2, 2, 4]])
    valid = items > 0
    with torch.no_grad():
        x = m.embed(items, types, valid.long().cumsum(1) * valid) * valid.unsqueeze(-1)
        allowed = m.attention_mask(valid).unsqueeze(1)
        for block in m.blocks:
            q, k, v = (t.transpose(1, 2) for t in block.qkv(x))
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
            x = block.finish(x, y.transpose(1, 2).flatten(2))
        assert torch.allclose(m.final_ln(x), m(items, types), atol=1e-6)


def test_rows_longer_than_max_len_are_trimmed_once_to_the_most_recent():
    m = make(copy_head=True)
    items = torch.arange(1, 13).unsqueeze(0)  # 12 > max_len 8
    types = torch.ones_like(items)
    with torch.no_grad():
        assert m(items, types).shape == (1, 8, 16)
        assert torch.equal(m.score_last(items, types), m.score_last(items[:, -8:], types[:, -8:]))


@pytest.mark.parametrize("n_categories", [0, 3])
def test_expand_keeps_every_known_row_and_the_output_on_known_items(n_categories):
    m = make(n_items=10, n_categories=n_categories, copy_head=True)
    with torch.no_grad():
        if n_categories:
            m.item_category.copy_(torch.tensor([0, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1]))
    # the new catalogue: every old item at its index, 4 new items appended (one new category)
    item_rows = list(range(1, 11)) + [0, 0, 0, 0]
    category_rows = [1, 2, 3, 0][:n_categories + (1 if n_categories else 0)]
    item_category = torch.cat([m.item_category, torch.tensor([4, 1, 0, 2]) % (n_categories + 1)])
    torch.manual_seed(1)
    grown = m.expand(item_rows, category_rows, item_category)
    assert grown.cfg.n_items == 14 and grown.cfg.n_categories == (4 if n_categories else 0)
    assert not grown.training
    old, new = m.state_dict(), grown.state_dict()
    assert set(old) == set(new)
    for name in set(old) - {"item_emb.weight", "cat_emb.weight", "item_category"}:
        assert torch.equal(old[name], new[name]), name
    assert torch.equal(new["item_emb.weight"][:11], old["item_emb.weight"])
    assert 0.005 < float(new["item_emb.weight"][11:].std()) < 0.05  # initialised as __init__ does, not zero
    if n_categories:
        assert torch.equal(new["cat_emb.weight"][:4], old["cat_emb.weight"])
        assert torch.equal(new["item_category"], item_category)
    items, types = torch.tensor([[0, 3, 7, 7, 10]]), torch.tensor([[0, 1, 1, 2, 1]])
    with torch.no_grad():
        assert torch.allclose(m(items, types), grown(items, types), atol=1e-6)
        assert torch.isfinite(grown.score_last(items, types)[:, 1:]).all()


def test_expand_moves_known_rows_by_index():
    m = make(n_items=5)
    grown = m.expand([5, 0, 1])  # new item 1 was item 5, new item 2 is new, new item 3 was item 1
    w, g = m.item_emb.weight, grown.item_emb.weight
    assert torch.equal(g[1], w[5]) and torch.equal(g[3], w[1]) and torch.equal(g[0], w[0])
    assert not torch.equal(g[2], w[2])
