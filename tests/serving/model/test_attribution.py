"""Occlusion attribution on a model whose right answer is known by hand, and prefix reuse equal to
brute-force occlusion on random SessionTransformers."""
import pytest
import torch

from serving.model.attribution import (
    RankedBatch,
    _BasePass,
    rank_with_attribution,
    remove_positions,
    score_candidates,
    supports_prefix,
)
from serving.model.transformer import ModelConfig, SessionTransformer


class BagModel(torch.nn.Module):
    """score(c) = sum over the session of W[item, c]: removing item j lowers c's score by W[j, c]."""

    def __init__(self, weights):
        super().__init__()
        self.weights = weights

    def score_last(self, items, types):
        return self.weights[items].sum(1) - self.weights[0] * (items == 0).sum(1, keepdim=True)


def test_remove_positions_keeps_rows_left_padded():
    seqs = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    out = remove_positions(seqs, torch.tensor([0, 0, 1]), torch.tensor([2, 4, 0]))
    assert out.tolist() == [[0, 0, 0, 6, 7], [0, 0, 0, 5, 6], [0, 2, 3, 4, 5]]


def test_attribution_cites_the_interaction_with_the_largest_weight():
    torch.manual_seed(0)
    n_items = 12
    weights = torch.rand(n_items + 1, n_items + 1)
    weights[0] = 0
    items = torch.tensor([[0, 0, 3, 7, 9], [1, 2, 3, 4, 5], [0, 0, 0, 0, 11]])
    ranked = rank_with_attribution(BagModel(weights), items, torch.ones_like(items), n_candidates=4)
    for b in range(items.shape[0]):
        for c, item in enumerate(ranked.items[b].tolist()):
            pos = ranked.attr_pos[b, c].item()
            session = [(p, i) for p, i in enumerate(items[b].tolist()) if i != 0]
            best_pos, best_item = max(session, key=lambda pi: (weights[pi[1], item].item(), pi[0]))
            assert pos == best_pos
            assert torch.isclose(ranked.attr_drop[b, c], weights[best_item, item])
    assert (ranked.items != 0).all()


def test_empty_session_has_no_attribution():
    weights = torch.rand(6, 6)
    empty = torch.zeros(1, 4, dtype=torch.long)
    ranked = rank_with_attribution(BagModel(weights), empty, empty, 3)
    assert ranked.attr_pos.tolist() == [[-1, -1, -1]]


def test_window_limits_attribution_to_recent_interactions():
    torch.manual_seed(1)
    weights = torch.rand(10, 10)
    weights[0] = 0
    items = torch.tensor([[1, 2, 3, 4, 5]])
    ranked = rank_with_attribution(BagModel(weights), items, torch.ones_like(items), n_candidates=5, window=2)
    assert set(ranked.attr_pos.flatten().tolist()) <= {3, 4}


def test_positions_are_columns_of_the_input_even_when_padding_is_trimmed():
    torch.manual_seed(2)
    weights = torch.rand(10, 10)
    weights[0] = 0
    padded = torch.tensor([[0, 0, 0, 4, 5, 6], [0, 0, 0, 0, 7, 8]])  # no row uses the first three columns
    ranked = rank_with_attribution(BagModel(weights), padded, torch.ones_like(padded), n_candidates=3)
    unpadded = rank_with_attribution(BagModel(weights), padded[:, 3:], torch.ones_like(padded[:, 3:]), n_candidates=3)
    assert isinstance(ranked, RankedBatch)
    assert torch.equal(ranked.items, unpadded.items)
    assert torch.equal(ranked.attr_pos, unpadded.attr_pos + 3)
    assert set(ranked.attr_pos[1].tolist()) <= {4, 5}


# ----------------------------------------------------------------------------- prefix reuse == brute force
MAX_LEN = 12
N_ITEMS = 40


def random_model(copy_head: bool, n_categories: int, seed: int, logit_scale: float = 0.0) -> SessionTransformer:
    """A SessionTransformer with large random weights, so scores (and drops) are well apart."""
    torch.manual_seed(seed)
    cfg = ModelConfig(n_items=N_ITEMS, n_categories=n_categories, max_len=MAX_LEN, d_model=16, n_layers=2,
                      n_heads=2, copy_head=copy_head, logit_scale=logit_scale)
    model = SessionTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
        if n_categories:
            model.item_category.copy_(torch.randint(0, n_categories + 1, (N_ITEMS + 1,)))
    return model.eval()


def random_batch(seed: int, width: int = MAX_LEN) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded rows of lengths 0, 1, 2, ..., max_len; some rows from a few items only, so
    sessions repeat items (the copy head's case) and repeat (item, type) pairs back to back."""
    g = torch.Generator().manual_seed(seed)
    lengths = [0, 1, 2, 3, 5, 7, MAX_LEN - 1, MAX_LEN, MAX_LEN, 1]
    items = torch.zeros(len(lengths), width, dtype=torch.long)
    types = torch.zeros_like(items)
    for r, n in enumerate(lengths):
        if n:
            high = 6 if r % 2 else N_ITEMS + 1
            items[r, width - n:] = torch.randint(1, high, (n,), generator=g)
            types[r, width - n:] = torch.randint(1, 3 if r % 2 else 5, (n,), generator=g)
    return items, types


@pytest.mark.parametrize("copy_head", [True, False])
@pytest.mark.parametrize("n_categories", [0, 5])
@pytest.mark.parametrize("logit_scale", [0.0, 16.0])
def test_prefix_reuse_scores_every_variant_as_brute_force(copy_head, n_categories, logit_scale):
    for seed in range(2):
        model = random_model(copy_head, n_categories, seed, logit_scale)
        items, types = random_batch(seed)
        with torch.no_grad():
            base = _BasePass(model, items, types)
            reference = model.score_last(items, types)
            assert torch.equal(torch.isfinite(base.scores()), torch.isfinite(reference))
            finite = torch.isfinite(reference)
            assert torch.allclose(base.scores()[finite], reference[finite], atol=1e-4)
            candidates = reference.topk(8, dim=1).indices
            for window in (0, 1, 3, 10, MAX_LEN):
                first = MAX_LEN - window if 0 < window < MAX_LEN else 0
                rows, positions = (items[:, first:] != 0).nonzero(as_tuple=True)
                positions = positions + first
                brute = score_candidates(model, remove_positions(items, rows, positions),
                                         remove_positions(types, rows, positions), candidates[rows])
                prefix = base.variant_scores(first, candidates)
                assert prefix.shape == brute.shape
                assert torch.allclose(prefix, brute, atol=1e-4), (window, (prefix - brute).abs().max())


@pytest.mark.parametrize("copy_head", [True, False])
@pytest.mark.parametrize("n_categories", [0, 5])
@pytest.mark.parametrize("window", [0, 1, 3, 10, MAX_LEN])
def test_prefix_reuse_ranks_and_attributes_as_brute_force(copy_head, n_categories, window):
    model = random_model(copy_head, n_categories, seed=window)
    padded = torch.zeros(10, 3, dtype=torch.long)  # padding columns no row uses: trimmed, then mapped back
    items, types = (torch.cat([padded, t], 1) for t in random_batch(seed=window))
    brute = rank_with_attribution(model, items, types, 8, window=window, method="brute")
    prefix = rank_with_attribution(model, items, types, 8, window=window)  # the default
    assert torch.equal(prefix.items, brute.items)
    assert torch.allclose(prefix.scores, brute.scores, atol=1e-4)
    assert torch.allclose(prefix.attr_drop, brute.attr_drop, atol=1e-4)
    assert (prefix.attr_pos[0] == -1).all()  # the empty session
    # The same positions, except where two deletions' drops differ by float noise only: there
    # the position cited must reach the maximum drop under brute force too.
    for row, c in (prefix.attr_pos != brute.attr_pos).nonzero().tolist():
        position = prefix.attr_pos[row, c:c + 1]
        variant = score_candidates(model, remove_positions(items, torch.tensor([row]), position),
                                   remove_positions(types, torch.tensor([row]), position),
                                   brute.items[row:row + 1, c:c + 1])
        assert abs(float(brute.scores[row, c] - variant[0, 0] - brute.attr_drop[row, c])) < 1e-5
    assert (prefix.attr_pos == brute.attr_pos).float().mean() > 0.95
    if window:
        cited = prefix.attr_pos[prefix.attr_pos >= 0]
        assert (cited >= items.shape[1] - window).all()


@pytest.mark.parametrize("method", ["brute", "prefix"])
def test_identical_neighbours_tie_to_the_most_recent(method):
    """Deleting either of two identical neighbours leaves the same session: an exact tie."""
    model = random_model(copy_head=True, n_categories=0, seed=3)
    items = torch.tensor([[0, 4, 9, 9, 2, 7, 7, 7]])
    types = torch.tensor([[0, 1, 2, 2, 1, 3, 3, 3]])
    ranked = rank_with_attribution(model, items, types, 20, method=method)
    cited = set(ranked.attr_pos.flatten().tolist())
    assert not cited & {2, 5, 6}  # never the older one of a run
    assert cited & {3, 7}  # (the runs do support some candidates)


def test_rows_longer_than_max_len_use_brute_force():
    """Deleting from a row longer than max_len lets an older interaction into the model's window."""
    model = random_model(copy_head=True, n_categories=5, seed=4)
    items, types = random_batch(seed=4, width=MAX_LEN + 3)
    items[-1], types[-1] = torch.arange(1, MAX_LEN + 4), torch.ones(MAX_LEN + 3, dtype=torch.long)
    assert not supports_prefix(model, items)
    brute = rank_with_attribution(model, items, types, 8, window=4, method="brute")
    prefix = rank_with_attribution(model, items, types, 8, window=4, method="prefix")
    assert torch.equal(prefix.attr_pos, brute.attr_pos) and torch.equal(prefix.attr_drop, brute.attr_drop)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError):
        rank_with_attribution(random_model(False, 0, 0), torch.ones(1, 3, dtype=torch.long),
                              torch.ones(1, 3, dtype=torch.long), 3, method="fast")


def test_prefix_reuse_in_small_blocks_and_chunks(monkeypatch):
    """Deleted columns split into blocks and rows into chunks give the same scores."""
    from serving.model import attribution

    model = random_model(copy_head=True, n_categories=5, seed=5)
    items, types = random_batch(seed=5)
    reference = rank_with_attribution(model, items, types, 8, window=0, method="brute")
    monkeypatch.setattr(attribution, "PREFIX_BLOCK", 3)
    monkeypatch.setattr(attribution, "PREFIX_CHUNK_ELEMENTS", 1)  # one row per chunk
    monkeypatch.setattr(attribution, "LOGIT_CHUNK_ELEMENTS", 1)  # one variant per block of logits
    ranked = rank_with_attribution(model, items, types, 8, window=0)
    assert torch.equal(ranked.items, reference.items)
    assert torch.allclose(ranked.attr_drop, reference.attr_drop, atol=1e-4)


# ----------------------------------------------------------------------------- one implementation
@pytest.mark.parametrize("copy_head", [True, False])
def test_ranking_scores_are_the_models_full_session_scores(copy_head):
    """The scores rank_with_attribution returns (from the prefix pass) are model.score_last's."""
    model = random_model(copy_head, n_categories=5, seed=6)
    items, types = random_batch(seed=6)
    with torch.no_grad():
        reference = model.score_last(items, types)
    ranked = rank_with_attribution(model, items, types, 8, window=3, method="prefix")
    assert torch.allclose(ranked.scores, reference.gather(1, ranked.items), atol=1e-4)
    assert torch.equal(ranked.items[1:], reference[1:].topk(8, dim=1).indices)  # row 0 is an empty session


class AlteredModel(SessionTransformer):
    """The pieces the prefix pass borrows from the model, changed: a prefix pass with its own copy of
    any of them would disagree with brute force (which runs the model's forward). (The variant pass
    builds its own causal mask over cached and recomputed keys; the base pass uses attention_mask.)"""

    def embed(self, items, types, positions, categories=None):
        return super().embed(items, types, positions, categories) * 1.5 + 0.25

    def pointer(self, query, att, dist, key_mask):
        return super().pointer(query, att * 0.5, dist + 1, key_mask)

    def mix(self, log_gen, copy, log_g, log_1mg):
        return super().mix(log_gen, copy * 0.5, log_g, log_1mg)


@pytest.mark.parametrize("copy_head", [True, False])
def test_prefix_pass_runs_the_models_own_pieces(copy_head):
    model = random_model(copy_head, n_categories=5, seed=7)
    altered = AlteredModel(model.cfg).eval()
    altered.load_state_dict(model.state_dict())
    items, types = random_batch(seed=7)
    with torch.no_grad():
        assert not torch.allclose(altered.score_last(items, types)[1:, 1:], model.score_last(items, types)[1:, 1:])
    brute = rank_with_attribution(altered, items, types, 8, method="brute")
    prefix = rank_with_attribution(altered, items, types, 8, method="prefix")
    assert torch.equal(prefix.items, brute.items)
    assert torch.allclose(prefix.scores, brute.scores, atol=1e-4)
    assert torch.allclose(prefix.attr_drop, brute.attr_drop, atol=1e-4)
