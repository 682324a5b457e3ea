"""Occlusion attribution on a model whose right answer is known by hand."""
import torch

from serving.model.attribution import RankedBatch, rank_with_attribution, remove_positions


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
    ranked = rank_with_attribution(BagModel(weights), torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long), 3)
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
