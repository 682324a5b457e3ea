"""The Feast adapter on embedded Feast (SQLite): names come from the feature views, values round-trip."""
import time
from dataclasses import fields

from contract.settings import Settings
from features.feature_repo.definitions import FEATURE_VIEWS, session_state
from features.state import ItemStats, OnlineState, SessionState, Shown, UserStats
from features.store import RECORDS, OnlineFeatures, feature_names


def test_every_state_record_is_exactly_its_feature_view_row():
    for view in FEATURE_VIEWS:
        assert [f.name for f in fields(RECORDS[view.name])] == feature_names(view), view.name


def test_state_round_trips_through_feast_and_unknown_entities_read_as_empty(tmp_path):
    features = OnlineFeatures(Settings(run_dir=tmp_path, online_store="sqlite"))
    features.apply()
    shown = (Shown(1_600, "3", ("x", 'y "quoted"')), Shown(1_700, "fallback", ()))
    session = SessionState(("a", "b"), ("view", "purchase"), ("b",), ("e1", "e2"), 2, 1_700, shown, 1)
    features.write(OnlineState({"s1": session}, {"a": ItemStats(3, 1, "c1")}, {"u1": UserStats(5, 2, ("s1",))}))
    state = features.read(["s1", "nobody"], ["a", "zz"], ["u1"])
    assert state.sessions == {"s1": session, "nobody": SessionState()}
    assert state.items == {"a": ItemStats(3, 1, "c1"), "zz": ItemStats()}
    assert state.users == {"u1": UserStats(5, 2, ("s1",))}


def test_erasure_deletes_the_rows_of_those_sessions_and_users_only(tmp_path):
    features = OnlineFeatures(Settings(run_dir=tmp_path, online_store="sqlite"))
    features.apply()
    session = SessionState(("a",), ("view",), (), ("e1",), 1, 1_700)
    features.write(OnlineState({"s1": session, "s2": session}, {"a": ItemStats(2, 0, "c1")},
                               {"u1": UserStats(1, 1, ("s1",)), "u2": UserStats(1, 1, ("s2",))}))
    assert features.erase(["s1", "unknown"], ["u1"]) == {"session_state": 1, "user_stats": 1}
    state = features.read(["s1", "s2"], ["a"], ["u1", "u2"])
    assert state.sessions == {"s1": SessionState(), "s2": session}
    assert state.users == {"u1": UserStats(), "u2": UserStats(1, 1, ("s2",))}
    assert state.items == {"a": ItemStats(2, 0, "c1")}  # not about a person


def test_sqlite_rows_past_their_view_ttl_are_deleted_others_kept(tmp_path):
    features = OnlineFeatures(Settings(run_dir=tmp_path, online_store="sqlite", session_ttl_s=1))
    features.apply()
    session = SessionState(("a",), ("view",), (), ("e1",), 1, 1_700)
    features.write(OnlineState({"s1": session}, {"a": ItemStats(2, 0, "c1")}, {"u1": UserStats(1, 1, ("s1",))}))
    assert features.purge_expired() == 0
    time.sleep(2.1)  # Feast keeps whole seconds: 2 s past a 1 s TTL is past it however the write rounded
    assert features.purge_expired() == len(feature_names(session_state))  # one row per feature
    state = features.read(["s1"], ["a"], ["u1"])
    assert state.sessions == {"s1": SessionState()}
    assert state.items["a"] == ItemStats(2, 0, "c1") and state.users["u1"] == UserStats(1, 1, ("s1",))
