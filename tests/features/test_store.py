"""The Feast adapter on embedded Feast (SQLite): names come from the feature views, values round-trip."""
from dataclasses import fields

from contract.settings import Settings
from features.feature_repo.definitions import FEATURE_VIEWS
from features.state import ItemStats, OnlineState, SessionState, UserStats
from features.store import RECORDS, OnlineFeatures, feature_names


def test_every_state_record_is_exactly_its_feature_view_row():
    for view in FEATURE_VIEWS:
        assert [f.name for f in fields(RECORDS[view.name])] == feature_names(view), view.name


def test_state_round_trips_through_feast_and_unknown_entities_read_as_empty(tmp_path):
    features = OnlineFeatures(Settings(run_dir=tmp_path, online_store="sqlite"))
    features.apply()
    session = SessionState(("a", "b"), ("view", "purchase"), ("b",), ("e1", "e2"), 2, 1_700)
    features.write(OnlineState({"s1": session}, {"a": ItemStats(3, 1, "c1")}, {"u1": UserStats(5, 2)}))
    state = features.read(["s1", "nobody"], ["a", "zz"], ["u1"])
    assert state.sessions == {"s1": session, "nobody": SessionState()}
    assert state.items == {"a": ItemStats(3, 1, "c1"), "zz": ItemStats()}
    assert state.users == {"u1": UserStats(5, 2)}
