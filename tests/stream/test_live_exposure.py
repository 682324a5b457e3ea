"""The diversity knob in the worker (select_items, Pipeline) and the live exposure metrics."""
import json

import pytest
from prometheus_client import REGISTRY

from contract.exposure import gini
from contract.ranking import Candidate
from contract.settings import Settings
from features.cache import StateCache
from features.store import OnlineFeatures
from stream.live_exposure import Exposure
from stream.pipeline import Pipeline, RawMessage
from stream.popularity import Popularity
from stream.selection import select_items
from tests.stream.fakes import process


def candidates(*ids):
    return [Candidate(item, 10.0 - n, -1, 0.0) for n, item in enumerate(ids)]


CATS = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "c1": "C"}


def test_diversity_zero_is_the_plain_selection():
    ranking = candidates("a1", "a2", "a3", "b1", "c1")
    plain = select_items(ranking, {"a2"}, 3, ["f"])
    assert select_items(ranking, {"a2"}, 3, ["f"], 0.0, CATS) == plain
    assert [p.item_id for p in plain] == ["a1", "a3", "b1"]


def test_diversity_picks_new_categories_but_keeps_the_exclusions_and_the_top_up():
    ranking = candidates("a1", "a2", "a3", "b1", "c1")
    picks = select_items(ranking, {"a1"}, 3, ["f"], 1.0, CATS)
    assert [p.item_id for p in picks] == ["a2", "b1", "c1"]  # a1 excluded (on screen or bought)
    picks = select_items(ranking, {"b1"}, 3, ["f"], 1.0, CATS)
    assert [p.item_id for p in picks] == ["a1", "c1", "a2"]  # b1 never comes back to diversify
    picks = select_items(candidates("a1", "a2", "a1"), set(), 4, ["a2", "f", "g"], 0.5, CATS)
    assert [(p.item_id, p.from_model) for p in picks] == [("a1", True), ("a2", True), ("f", False), ("g", False)]
    unknown = select_items(candidates("a1", "a2", "x", "y"), set(), 3, [], 1.0, CATS)
    assert [p.item_id for p in unknown] == ["a1", "x", "y"]  # no category: never penalised


def value(name, labels=None):
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_exposure_counts_slots_by_tail_and_exports_gini_and_coverage():
    pop = Popularity()
    for n in range(10):  # items p0..p9 seen with counts 10..1: the head (top 20% = 2 items) is p0, p1
        pop.observe(f"p{n}", 10 - n, 1_000 + n)
    clock = [0.0]
    exposure = Exposure(pop, refresh_s=5.0, clock=lambda: clock[0])
    head, long = value("reco_exposure_slots_total", {"tail": "head"}), value("reco_exposure_slots_total",
                                                                            {"tail": "long"})
    exposure.observe(["p0", "p1", "p5"])  # the first call sets the threshold before counting
    assert exposure.head_min == 9
    exposure.observe(["p0", "p1", "p5", "x"])  # x: recommended, never seen in an event
    assert value("reco_exposure_slots_total", {"tail": "head"}) - head == 2 + 2
    assert value("reco_exposure_slots_total", {"tail": "long"}) - long == 1 + 2
    got = exposure.refresh()
    # 11 known items (p0..p9 and x); slots: p0 2, p1 2, p5 2, x 1, seven zeros
    expected = gini([2, 2, 2, 1] + [0] * 7)
    assert got == {"gini": pytest.approx(expected), "coverage_items": 4, "catalogue_items": 11, "head_min": 9}
    assert value("reco_exposure_gini") == pytest.approx(expected)
    assert value("reco_exposure_coverage_items") == 4 and value("reco_exposure_catalogue_items") == 11


def test_gauges_are_refreshed_at_most_every_refresh_s():
    pop = Popularity()
    pop.observe("p", 1, 0)
    clock = [100.0]
    exposure = Exposure(pop, refresh_s=5.0, clock=lambda: clock[0])
    exposure.observe(["p"])
    assert exposure.refreshed_at == 100.0
    clock[0] = 104.0
    exposure.observe(["p"])
    assert exposure.refreshed_at == 100.0
    clock[0] = 105.0
    exposure.observe(["q"])
    assert exposure.refreshed_at == 105.0 and value("reco_exposure_coverage_items") == 2


def test_gini_with_zeros_counts_them_as_values():
    assert gini([5], zeros=3) == pytest.approx(gini([5, 0, 0, 0])) == pytest.approx(3 / 4)
    assert gini([3, 1, 2], zeros=2) == pytest.approx(gini([0, 3, 1, 0, 2]))
    assert gini([], 0) == 0.0 and gini([1, 1]) == 0.0
    assert gini({"a": 3, "b": 1}.values(), zeros=1) == pytest.approx(gini([3, 1, 0]))


class FakeRanker:
    """Ranks i0..i29 (score 30 - n), whatever the session."""

    async def rank(self, sessions):
        ranked = [iter([Candidate(f"i{n}", 30.0 - n, -1, 0.0) for n in range(30)]) for _ in sessions]
        return ranked, "fake:1", "synthetic"


def event(n, session, item, category):
    return RawMessage(json.dumps({"event_id": f"e{n}", "event_type": "view", "session_id": session, "user_id": None,
                                  "item_id": item, "ts": 1_700_000_000_000 + n, "price": 1.0,
                                  "category_id": category}).encode(), "events", 0, n)


def make_pipeline(tmp_path, diversity):
    settings = Settings(run_dir=tmp_path / str(diversity), online_store="sqlite", k=5, diversity=diversity,
                        pseudonym_key="k")
    features = OnlineFeatures(settings)
    features.apply()
    return Pipeline(settings, StateCache(features), FakeRanker())


async def test_the_pipeline_reranks_on_the_categories_the_worker_holds(tmp_path):
    # i0..i3 in category c1, i4 in c2, i5 in c3 (from the events); i6.. have no category known
    warm = [event(n, "warm", f"i{n}", "c1" if n < 4 else f"c{n - 2}") for n in range(6)]
    got = {}
    for diversity in (0.0, 0.5):
        pipe = make_pipeline(tmp_path, diversity)
        await process(pipe, warm)
        rec = (await process(pipe, [event(10, "s", "i5", "c3")]))[1].recommendations[0]
        got[diversity] = [i.item_id for i in rec.items]
        assert rec.fallback is None and all(i.explanation for i in rec.items)
        assert sum(pipe.exposure.counts.values()) == 7 * 5  # every slot of every recommendation
    assert got[0.0] == ["i0", "i1", "i2", "i3", "i4"]
    # λ = 0.5, rel = (29 - n) / 29 without i5 (on screen): after i0, i4 (new category, 0.43) beats the
    # unknown-category i6 (0.40), and repeats of c1 go below zero
    assert got[0.5] == ["i0", "i4", "i6", "i7", "i8"]


def test_diversity_outside_the_unit_interval_is_refused(tmp_path):
    with pytest.raises(ValueError, match="RECO_DIVERSITY"):
        make_pipeline(tmp_path, 1.5)
