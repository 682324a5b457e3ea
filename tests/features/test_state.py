"""Pure feature math: how events change session state, and how tallies change the item and user
counters exactly once."""
from contract.messages import Event, Tally
from features.state import (
    MAX_USER_SESSIONS,
    RECENT_EVENT_IDS,
    ItemStats,
    OnlineState,
    UserStats,
    apply_events,
    apply_item_tally,
    apply_user_tally,
    is_first_event,
    record_offset,
)


def ev(n: int, session: str = "s1", kind: str = "view", item: str = "a", user: str | None = "u1") -> Event:
    return Event(event_id=f"e{n}", event_type=kind, session_id=session, user_id=user, item_id=item,
                 ts=1_000 + n, category_id="c1")


def count(events: list[Event], state: OnlineState | None = None, partition: int = 0) -> OnlineState:
    """Folds events as a worker does, then their tallies as the counters' owners do (offset = n)."""
    state = state or OnlineState()
    counted = OnlineState()
    snaps, _ = apply_events(state, events, max_len=50)
    for offset, (event, snap) in enumerate(zip(events, snaps)):
        tally = Tally(event_id=event.event_id, event_type=event.event_type, session_id=event.session_id,
                      user_id=event.user_id, item_id=event.item_id, category_id=event.category_id,
                      session_is_new=is_first_event(snap, event), source_partition=partition,
                      source_offset=int(event.event_id[1:]))
        item = apply_item_tally(counted.items.get(event.item_id, ItemStats()), tally)
        counted.items[event.item_id] = item or counted.items[event.item_id]
        if event.user_id is not None:
            user = apply_user_tally(counted.users.get(event.user_id, UserStats()), tally)
            counted.users[event.user_id] = user or counted.users[event.user_id]
    state.items, state.users = counted.items, counted.users
    return state


def test_events_fold_in_order_and_each_snapshot_is_the_state_right_after_it():
    state = OnlineState()
    snaps, fresh = apply_events(state, [ev(1, item="a"), ev(2, item="b", kind="purchase"), ev(3, item="a")],
                                max_len=50)
    assert fresh == [True, True, True]
    assert [s.item_ids for s in snaps] == [("a",), ("a", "b"), ("a", "b", "a")]
    assert snaps[-1].event_types == ("view", "purchase", "view") and snaps[-1].purchased_items == ("b",)
    assert state.items["a"].interaction_count == 2 and state.items["a"].category_id == "c1"  # the local view
    assert not state.users  # users are counted by their owner, from tallies


def test_a_redelivered_event_changes_nothing_and_reuses_the_current_state():
    state = OnlineState()
    apply_events(state, [ev(1), ev(2, item="b")], max_len=50)
    snaps, fresh = apply_events(state, [ev(1), ev(2, item="b"), ev(3)], max_len=50)
    assert fresh == [False, False, True]
    assert snaps[0] == snaps[1] != state.sessions["s1"]
    assert state.sessions["s1"].event_count == 3 and state.items["a"].interaction_count == 2


def test_sequences_are_capped_but_counts_are_not():
    state = OnlineState()
    apply_events(state, [ev(n, item=f"i{n}") for n in range(100)], max_len=5)
    session = state.sessions["s1"]
    assert session.item_ids == tuple(f"i{n}" for n in range(95, 100))
    assert len(session.recent_event_ids) == RECENT_EVENT_IDS and session.event_count == 100


def test_tallies_count_items_and_users_and_new_sessions_once_per_user():
    state = count([ev(1, user=None), ev(2, session="s2", kind="purchase"), ev(3, session="s2"), ev(4, session="s3")])
    assert state.items["a"].interaction_count == 4 and state.items["a"].purchase_count == 1
    assert state.users["u1"].event_count == 3 and state.users["u1"].session_count == 2
    assert state.users["u1"].session_ids == ("s2", "s3")  # what an erasure by user finds


def test_a_tally_counts_once_however_often_it_is_forwarded():
    tally = Tally(event_id="e7", event_type="purchase", session_id="s1", user_id="u1", item_id="a", category_id=None,
                  session_is_new=True, source_partition=2, source_offset=7)
    item = apply_item_tally(ItemStats(), tally)
    assert item == ItemStats(1, 1, None, (-1, -1, 7))
    assert apply_item_tally(item, tally) is None
    assert apply_item_tally(item, tally.model_copy(update={"source_offset": 6})) is None  # earlier: counted before
    later = apply_item_tally(item, tally.model_copy(update={"source_offset": 8, "source_partition": 0}))
    assert later == ItemStats(2, 2, None, (8, -1, 7))
    user = apply_user_tally(UserStats(), tally)
    assert user is not None and apply_user_tally(user, tally) is None and user.session_count == 1


def test_record_offset_pads_partitions_not_seen_yet():
    assert record_offset((), 0, 5) == (5,)
    assert record_offset((5,), 3, 1) == (5, -1, -1, 1)
    assert record_offset((5, -1, -1, 1), 3, 1) is None


def test_a_redelivered_first_event_still_opens_its_session_for_the_user():
    state = OnlineState()
    snaps, _ = apply_events(state, [ev(1), ev(2)], max_len=50)
    assert [is_first_event(s, e) for s, e in zip(snaps, [ev(1), ev(2)])] == [True, False]
    snaps, fresh = apply_events(state, [ev(1)], max_len=50)  # redelivered: the snapshot is the current state
    assert fresh == [False] and is_first_event(snaps[0], ev(1))


def test_a_user_lists_only_their_most_recent_sessions():
    state = count([ev(n, session=f"s{n}") for n in range(MAX_USER_SESSIONS + 5)])
    user = state.users["u1"]
    assert user.session_count == MAX_USER_SESSIONS + 5
    assert user.session_ids == tuple(f"s{n}" for n in range(5, MAX_USER_SESSIONS + 5))
