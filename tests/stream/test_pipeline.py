"""The pipeline on real (embedded SQLite) Feast with a fake ranker in place of Triton."""
import json

import pytest
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from contract.settings import Settings
from features.cache import StateCache
from features.privacy import pseudonym
from features.store import OnlineFeatures
from stream.checkpoint import item_key, route, user_key
from stream.counters import Counters
from stream.pipeline import Pipeline, RawMessage
from stream.writeback import WriteBehind
from tests.stream.fakes import FakeRanker, FlakyStore, event, make_pipeline, messages, process


@pytest.fixture
def pipeline(tmp_path):
    return make_pipeline(tmp_path)


async def test_every_valid_event_gets_a_recommendation_and_bad_ones_a_dead_letter(pipeline):
    payloads = [event(1), b"{oops", event(2, kind="purchase", item="i0"), {**event(3), "event_type": "wish"}, event(4)]
    _, result = await process(pipeline, messages(payloads))
    assert [r.event_id for r in result.recommendations] == ["e1", "e2", "e4"]
    assert [(d.reason, d.offset) for d in result.dead_letters] == [("not_json", 1), ("unknown_event_type", 3)]
    for rec in result.recommendations:
        ids = [i.item_id for i in rec.items]
        assert len(ids) == 5 and len(set(ids)) == 5
        assert all(item.explanation for item in rec.items)
    assert "i0" not in [i.item_id for i in result.recommendations[2].items]  # purchased in e2
    assert result.recommendations[2].items[0].explanation[0] == "view:i4"


async def count_tallies(store, results) -> None:  # results: Folded batches
    """What the owners of the counters do with these batches' tallies: count, then write to Feast."""
    cache = StateCache(store)
    tallies = [t for folded in results for t in folded.tallies]
    for kind, key in (("item", item_key), ("user", user_key)):
        await Counters(cache, kind).count(list(route(tallies, key, partitions=8).values()))
    store.write(cache.take_dirty())


async def test_online_state_follows_the_events_and_redelivery_is_idempotent(pipeline):
    batch = messages([event(1, item="a"), event(2, item="b", kind="purchase"), event(3, "s2", item="a")])
    first, _ = await process(pipeline, batch)
    again, _ = await process(pipeline, batch)  # redelivered after a crash: no double counting
    assert [t.source_offset for t in again.tallies] == [0, 1, 2]  # the same events, so counted once
    store = pipeline.state.store
    acked = []

    async def ack(event):
        acked.append(event)

    writeback = WriteBehind(pipeline.state, store, ack)
    writeback.published(["e1", "e2", "e3"])
    assert await writeback.flush() and acked == ["e1", "e2", "e3"]
    await count_tallies(store, [first, again])
    user = pseudonym(pipeline.settings.pseudonym_key.get_secret_value().encode(), "u1")  # kept as a pseudonym
    state = store.read(["s1", "s2"], ["a", "b"], [user])
    assert state.sessions["s1"].item_ids == ("a", "b")
    assert state.sessions["s1"].event_types == ("view", "purchase")
    assert state.sessions["s1"].purchased_items == ("b",)
    assert state.items["a"].interaction_count == 2 and state.items["b"].purchase_count == 1
    assert state.users[user].event_count == 3 and state.users[user].session_count == 2


async def test_triton_outage_serves_popular_items_with_a_fallback_reason(pipeline):
    await process(pipeline, messages([event(n, session=f"s{n}", item=f"p{n % 3}") for n in range(9)]))
    pipeline.ranker.down = True
    _, result = await process(pipeline, messages([event(20, session="new")]))
    rec = result.recommendations[0]
    assert rec.fallback == "triton_unavailable"
    ids = [i.item_id for i in rec.items]
    assert ids == sorted(ids, key=["p0", "p1", "p2"].index) and set(ids) == {"p0", "p1", "p2"}  # never i20, on screen
    assert all(i.explanation[0] == "fallback:triton_unavailable" for i in rec.items)


async def test_the_event_own_item_is_never_recommended_nor_explained_by_itself(pipeline):
    """The fake ranker ranks i0..i29 and cites the latest interaction: i1 is on screen after e1."""
    _, result = await process(pipeline, messages([event(0, item="i3"), event(1, item="i1")]))
    first, second = ([i.item_id for i in r.items] for r in result.recommendations)
    assert "i3" not in first and "i1" not in second and "i3" in second
    cited = [tok for r in result.recommendations for i in r.items for tok in i.explanation if tok.startswith("view:")]
    assert all(tok != f"view:{i.item_id}" for r in result.recommendations for i in r.items for tok in i.explanation)
    assert cited  # the check above is not vacuous


async def test_a_model_of_another_catalogue_only_recommends_items_the_stream_named(pipeline):
    """The fake model ranks i0..i29; this site's stream has named i0..i7 and p0..p2 only."""
    pipeline.ranker.catalogue = "diginetica"
    named = [f"i{n}" for n in range(8)] + ["p0", "p1", "p2"]
    await process(pipeline, messages([event(n, session=f"s{n}", item=item) for n, item in enumerate(named)]))
    _, result = await process(pipeline, messages([event(20, session="new", item="i2")]))
    ids = [i.item_id for i in result.recommendations[0].items]
    assert ids == ["i0", "i1", "i3", "i4", "i5"] and set(ids) <= set(named)
    assert REGISTRY.get_sample_value("reco_model_catalogue_mismatch") == 1
    pipeline.ranker.catalogue = "synthetic"  # the site's own (Settings.catalogue): every candidate is an item here
    _, result = await process(pipeline, messages([event(21, session="new2", item="i0")]))
    assert [i.item_id for i in result.recommendations[0].items] == ["i1", "i2", "i3", "i4", "i5"]
    assert REGISTRY.get_sample_value("reco_model_catalogue_mismatch") == 0
    pipeline.ranker.catalogue = "diginetica"
    _, result = await process(pipeline, messages([event(22, session="new3", item="p0")]))
    ids = [i.item_id for i in result.recommendations[0].items]
    assert len(ids) == 5 and "i8" not in ids and set(ids) <= set(named)


async def test_excluding_the_whole_session(tmp_path):
    settings = Settings(run_dir=tmp_path, online_store="sqlite", k=5, exclude_session_items=True)
    features = OnlineFeatures(settings)
    features.apply()
    pipe = Pipeline(settings, StateCache(features), FakeRanker())
    _, result = await process(pipe, messages([event(0, item="i0"), event(1, item="i1"), event(2, item="i2")]))
    assert [i.item_id for i in result.recommendations[-1].items] == ["i3", "i4", "i5", "i6", "i7"]


async def test_user_ids_are_pseudonymous_everywhere_unless_publishing_them_is_configured(tmp_path):
    for publish in (False, True):
        settings = Settings(run_dir=tmp_path / str(publish), online_store="sqlite", k=5, pseudonym_key="k3y",
                            publish_user_id=publish)
        features = OnlineFeatures(settings)
        features.apply()
        pipe = Pipeline(settings, StateCache(features), FakeRanker())
        folded, result = await process(pipe, messages([event(1)]))
        rec = result.recommendations[0]
        features.write(pipe.state.take_dirty())  # what the write-behind does
        await count_tallies(features, [folded])
        hidden = pseudonym(b"k3y", "u1")
        assert hidden != pseudonym(b"other", "u1") and hidden.startswith("p_")
        assert rec.user_id == ("u1" if publish else hidden) and rec.session_id == "s1"
        assert features.read([], [], [hidden]).users[hidden].event_count == 1
        assert features.read([], [], ["u1"]).users["u1"].event_count == 0


async def test_a_later_event_on_a_recommended_item_is_attributed_to_its_version_and_rank(pipeline):
    def count(event_type, bucket):
        labels = {"event_type": event_type, "model_version": "fake:1", "rank_bucket": bucket}
        return REGISTRY.get_sample_value("reco_attributed_events_total", labels) or 0.0

    def recommended():
        return REGISTRY.get_sample_value("reco_recommendations_total", {"model_version": "fake:1"}) or 0.0

    def reciprocal_ranks():
        labels = {"event_type": "click", "model_version": "fake:1"}
        return REGISTRY.get_sample_value("reco_attributed_reciprocal_rank_total", labels) or 0.0

    before = count("click", "2-5"), count("click", "1"), recommended(), reciprocal_ranks()
    _, first = await process(pipeline, messages([event(1, item="i0")]))
    assert [i.item_id for i in first.recommendations[0].items][:3] == ["i1", "i2", "i3"]
    # i3 was third for e1; then i0 is first for e2 (its own item i3 excluded); e4 touches nothing shown.
    second = messages([event(2, kind="click", item="i3"), event(3, kind="click", item="i0"),
                       event(4, kind="click", item="zz")])
    await process(pipeline, second)
    assert (count("click", "2-5") - before[0], count("click", "1") - before[1]) == (1, 1)
    assert recommended() - before[2] == 4
    assert reciprocal_ranks() - before[3] == pytest.approx(1 / 3 + 1)
    session = pipeline.state.sessions.values["s1"]
    assert session.attributed_count == 2 and [s.ts for s in session.recommended][-1] == event(4)["ts"]
    await process(pipeline, second)  # redelivered: its recommendations go out again, but count once
    assert (count("click", "2-5") - before[0], count("click", "1") - before[1]) == (1, 1)
    assert recommended() - before[2] == 4
    assert reciprocal_ranks() - before[3] == pytest.approx(1 / 3 + 1)


async def test_store_outage_defers_unheld_sessions_with_a_flag_and_folds_them_exactly_once_back(pipeline):
    store = FlakyStore(pipeline.state.store)
    pipeline.state.store = store
    await process(pipeline, messages([event(1, "s1", item="a")]))  # s1 is held from now on
    store.down = True

    batch = [RawMessage(json.dumps(p).encode(), "events", 0, offset) for offset, p in
             [(10, event(2, "s1", item="b")), (11, event(3, "s2", item="c")), (12, event(4, "s2", item="d"))]]
    folded = await pipeline.fold(batch, degrade=True)
    assert [(d.message.partition, d.message.offset) for d in folded.deferred] == [(0, 11), (0, 12)]  # s2: unread
    assert [t.event_id for t in folded.tallies] == ["e2"]  # deferred events are not counted yet
    result = await pipeline.recommend(folded)
    assert [r.fallback for r in result.recommendations] == [None, "features_unavailable", "features_unavailable"]
    assert all(len(r.items) == 5 for r in result.recommendations)
    assert "d" not in [i.item_id for i in result.recommendations[2].items]  # never the item on screen
    with pytest.raises(RedisConnectionError):  # without degrade the read fails as before
        await pipeline.fold(batch[1:])
    e5 = RawMessage(json.dumps(event(5, "s2", item="e")).encode(), "events", 0, 13)
    later = await pipeline.fold([e5], degrade=True, waiting={"s2"})
    assert [d.message.offset for d in later.deferred] == [13]  # behind its session's deferred events

    store.down = False
    refolded = await pipeline.fold(batch[1:] + [e5])
    assert not refolded.deferred and [t.event_id for t in refolded.tallies] == ["e3", "e4", "e5"]
    assert refolded.tallies[0].session_is_new  # known only now that the stored session was read
    store.write(pipeline.state.take_dirty())
    await count_tallies(store.store, [folded, refolded])
    user = pseudonym(pipeline.settings.pseudonym_key.get_secret_value().encode(), "u1")
    state = store.read(["s1", "s2"], ["c"], [user])
    assert state.sessions["s1"].item_ids == ("a", "b") and state.sessions["s2"].item_ids == ("c", "d", "e")
    assert state.items["c"].interaction_count == 1
    assert state.users[user].session_count == 1  # s2 only: s1's first event was counted by the first batch's tallies
