from contract.ranking import Candidate
from features.state import SessionState
from stream.explain import explain_fill_item, explain_model_item, session_categories
from stream.popularity import Popularity
from stream.selection import select_items
from tools.tail import humanize

SESSION = SessionState(item_ids=("a", "b", "c"), event_types=("view", "add_to_cart", "view"))


def popularity_with(counts: dict[str, int]) -> Popularity:
    pop = Popularity(top_n=2)
    for item, count in counts.items():
        pop.observe(item, count, ts=0)
    pop.refresh()
    return pop


def test_model_item_cites_the_attributed_interaction_and_shared_category():
    categories = {"x": "c9", "b": "c9", "a": "c1"}
    tokens = explain_model_item(Candidate("x", 1.0, attr_index=1, attr_drop=0.7), SESSION, categories,
                                session_categories(SESSION, categories), popularity_with({}))
    assert tokens == ["add_to_cart:b", "category:c9"]


def test_no_positive_attribution_means_popularity_carried_it():
    tokens = explain_model_item(Candidate("x", 1.0, attr_index=1, attr_drop=-0.2), SESSION, {}, set(),
                                popularity_with({}))
    assert tokens == ["popular"]


def test_short_session_is_cold_start():
    short = SessionState(item_ids=("a",), event_types=("view",))
    popularity = popularity_with({"x": 5, "y": 1, "z": 1})
    tokens = explain_model_item(Candidate("x", 1.0, 0, 1.0), short, {}, set(), popularity)
    assert tokens == ["view:a", "popular", "cold_start"]


def test_fill_items_say_why():
    tokens = explain_fill_item("x", popularity_with({"x": 3}), "triton_unavailable")
    assert tokens == ["fallback:triton_unavailable", "popular"]


def test_selection_is_distinct_skips_purchases_and_fills():
    ranking = [Candidate("a", 4, 0, 1), Candidate("b", 3, 1, 1), Candidate("a", 2, 0, 1), Candidate("c", 1, -1, 0)]
    picks = select_items(ranking, excluded={"b"}, k=4, fill=["c", "d", "e"])
    assert [p.item_id for p in picks] == ["a", "c", "d", "e"]
    assert [p.from_model for p in picks] == [True, True, False, False]


def test_humanize():
    assert humanize("view:i-42") == "because you viewed i-42"
    assert humanize("add_to_cart:i-1") == "because you added to cart i-1"
    assert humanize("category:c3").startswith("same category")


def test_tail_summary_times_what_it_can_and_says_when_it_cannot():
    from contract.messages import Recommendation
    from tools.tail import summary

    recs = [Recommendation(event_id=f"e{n}", session_id="s", user_id=None, items=[], model_version="m:1",
                           generated_at=1_000 + 10 * n) for n in range(10)]
    assert "p50 15 ms" in summary(recs, {f"e{n}": 1_000 + 10 * n - 10 - n for n in range(10)})
    assert "p50 n/a" in summary(recs, {}) and "(of 0 timed)" in summary(recs, {})
