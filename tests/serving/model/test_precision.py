"""Serving precisions: what each variant changes, that int8 reaches the attention path the served
ranking runs through, and that every variant ranks like fp32 up to its rounding."""
import pytest
import torch
from torch import nn

from serving.model.attribution import rank_with_attribution
from serving.model.precision import (
    DEFAULT_PRECISION,
    PRECISIONS,
    check_precision,
    float_linears,
    quantized_modules,
    serving_device,
    state_bytes,
    with_precision,
)
from serving.model.transformer import ModelConfig, SessionTransformer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = SessionTransformer(ModelConfig(n_items=40, max_len=8, d_model=32, n_layers=2, n_heads=2, dropout=0.0))
    with torch.no_grad():  # weights of a trained model's size, not the tiny initial ones: scores spread out
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net.eval()


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(1)
    items = torch.randint(1, 41, (6, 8), generator=gen)
    items[0, :5] = 0  # left padding
    items[1, :7] = 0  # one interaction
    types = torch.randint(1, 5, items.shape, generator=gen) * (items > 0)
    return items, types


def test_every_precision_is_known_and_others_are_refused():
    assert PRECISIONS == ("fp32", "bf16", "fp16", "int8") and DEFAULT_PRECISION in PRECISIONS
    for precision in PRECISIONS:
        assert check_precision(precision) == precision
    with pytest.raises(ValueError, match="precision must be one of"):
        check_precision("int4")


def test_int8_runs_on_the_cpu_even_with_a_gpu():
    assert serving_device("int8", gpu=True) == "cpu"
    assert [serving_device(p, True) for p in ("fp32", "bf16", "fp16")] == ["cuda:0"] * 3
    assert serving_device("fp32", True, device_id=2) == "cuda:2"
    assert {serving_device(p, False) for p in PRECISIONS} == {"cpu"}


def test_variants_leave_the_trained_model_alone(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    variants = {p: with_precision(model, p) for p in PRECISIONS}
    assert variants["fp32"] is model
    assert all(not v.training for v in variants.values())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not quantized_modules(model)


def test_half_precisions_cast_every_float_tensor(model):
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        variant = with_precision(model, precision)
        assert {p.dtype for p in variant.parameters()} == {dtype}
        assert variant.item_category.dtype == torch.long  # an index buffer, not a weight
        assert state_bytes(variant) < 0.6 * state_bytes(model)


def test_int8_quantises_every_linear_layer_and_nothing_else(model):
    variant = with_precision(model, "int8")
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert quantized_modules(variant) == linears and float_linears(variant) == []
    for layer in range(2):
        assert {f"blocks.{layer}.attn.qkv", f"blocks.{layer}.attn.proj", f"blocks.{layer}.ffn.0",
                f"blocks.{layer}.ffn.3"} <= set(linears)
    assert {"copy_q", "copy_k", "copy_gate"} <= set(linears)
    # the embeddings (the output layer too: it is the item-embedding table) stay fp32
    assert variant.item_emb.weight.dtype == torch.float32
    assert state_bytes(variant) < state_bytes(model)


def test_the_served_path_calls_the_quantised_attention_projections(model, batch):
    """Both the base pass and the occluded variants of rank_with_attribution (prefix reuse) go
    through the quantised qkv / proj modules, not through float weights taken from them."""
    variant = with_precision(model, "int8")
    calls: list[str] = []
    hooks = [variant.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: calls.append(name))
             for name in ("blocks.0.attn.qkv", "blocks.1.attn.proj", "blocks.1.ffn.3")]
    try:
        rank_with_attribution(variant, *batch, n_candidates=5, attribute=True, window=0)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls.count("blocks.0.attn.qkv") >= 2  # the base pass, then the variants' recomputed suffixes
    assert "blocks.1.attn.proj" in calls and "blocks.1.ffn.3" in calls


@pytest.mark.parametrize("precision, tolerance", [("fp32", 0.0), ("fp16", 0.02), ("bf16", 0.15), ("int8", 0.15)])
def test_variants_score_like_fp32_up_to_rounding(model, batch, precision, tolerance):
    items, types = batch
    variant = with_precision(model, precision)
    with torch.no_grad():
        want = model.score_last(items, types)
        got = variant.score_last(items, types)
    assert got.dtype == torch.float32  # scores stay fp32 under every precision
    finite = torch.isfinite(want)
    assert torch.equal(finite, torch.isfinite(got))
    assert (got[finite] - want[finite]).abs().max() <= tolerance
    ranked = rank_with_attribution(variant, items, types, n_candidates=5, attribute=True, window=0)
    reference = rank_with_attribution(variant, items, types, n_candidates=5, attribute=True, window=0, method="brute")
    assert ranked.scores.dtype == torch.float32 and ranked.attr_drop.dtype == torch.float32
    # The served (prefix reuse) path agrees with plain scoring of the same variant, and its
    # attribution drops with brute-force occlusion, up to the variant's rounding.
    torch.testing.assert_close(ranked.scores, got.topk(5).values, atol=max(tolerance, 1e-5), rtol=0)
    torch.testing.assert_close(ranked.scores, reference.scores, atol=max(tolerance, 1e-5), rtol=0)
    torch.testing.assert_close(ranked.attr_drop, reference.attr_drop, atol=max(2 * tolerance, 1e-4), rtol=0)
