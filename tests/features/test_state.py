"""Pure feature math: how events change session, item and user state."""
from contract.messages import Event
from features.state import MAX_USER_SESSIONS, RECENT_EVENT_IDS, OnlineState, apply_events


def ev(n: int, session: str = "s1", kind: str = "view", item: str = "a", user: str | None = "u1") -> Event:
    return Event(event_id=f"e{n}", event_type=kind, session_id=session, user_id=user, item_id=item,
                 ts=1_000 + n, category_id="c1")


def test_events_fold_in_order_and_each_snapshot_is_the_state_right_after_it():
    state = OnlineState()
    snaps, fresh = apply_events(state, [ev(1, item="a"), ev(2, item="b", kind="purchase"), ev(3, item="a")],
                                max_len=50)
    assert fresh == [True, True, True]
    assert [s.item_ids for s in snaps] == [("a",), ("a", "b"), ("a", "b", "a")]
    assert snaps[-1].event_types == ("view", "purchase", "view") and snaps[-1].purchased_items == ("b",)
    assert state.items["a"].interaction_count == 2 and state.items["b"].purchase_count == 1
    assert state.items["a"].category_id == "c1"
    assert state.users["u1"].event_count == 3 and state.users["u1"].session_count == 1


def test_a_redelivered_event_changes_nothing_and_reuses_the_current_state():
    state = OnlineState()
    apply_events(state, [ev(1), ev(2, item="b")], max_len=50)
    snaps, fresh = apply_events(state, [ev(1), ev(2, item="b"), ev(3)], max_len=50)
    assert fresh == [False, False, True]
    assert snaps[0] == snaps[1] != state.sessions["s1"]
    assert state.sessions["s1"].event_count == 3 and state.items["a"].interaction_count == 2
    assert state.users["u1"].event_count == 3


def test_sequences_are_capped_but_counts_are_not():
    state = OnlineState()
    apply_events(state, [ev(n, item=f"i{n}") for n in range(100)], max_len=5)
    session = state.sessions["s1"]
    assert session.item_ids == tuple(f"i{n}" for n in range(95, 100))
    assert len(session.recent_event_ids) == RECENT_EVENT_IDS and session.event_count == 100


def test_anonymous_events_leave_user_state_alone_and_new_sessions_count_once_per_user():
    state = OnlineState()
    apply_events(state, [ev(1, user=None), ev(2, session="s2"), ev(3, session="s2"), ev(4, session="s3")], max_len=50)
    assert state.users["u1"].event_count == 3 and state.users["u1"].session_count == 2
    assert state.users["u1"].session_ids == ("s2", "s3")  # what an erasure by user finds


def test_a_user_lists_only_their_most_recent_sessions():
    state = OnlineState()
    apply_events(state, [ev(n, session=f"s{n}") for n in range(MAX_USER_SESSIONS + 5)], max_len=50)
    user = state.users["u1"]
    assert user.session_count == MAX_USER_SESSIONS + 5
    assert user.session_ids == tuple(f"s{n}" for n in range(5, MAX_USER_SESSIONS + 5))
