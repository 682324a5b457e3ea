from serving.offline.data import Interaction, Session
from tools.produce import session_events


def test_replay_merges_sessions_in_time_order_and_keeps_each_event_in_its_session():
    sessions = [
        Session("a", None, [Interaction("i1", "view", 10), Interaction("i2", "click", 30)]),
        Session("b", "u1", [Interaction("i3", "view", 20), Interaction("i4", "purchase", 40)]),
    ]
    events = list(session_events(sessions, stamp_now=False, prefix="p-"))
    assert [(e.session_id, e.item_id, e.ts) for e in events] == [
        ("p-a", "i1", 10), ("p-b", "i3", 20), ("p-a", "i2", 30), ("p-b", "i4", 40)]
    assert [e.event_id for e in events] == ["p-a-0", "p-b-0", "p-a-1", "p-b-1"]
    assert events[1].user_id == "u1" and events[0].user_id is None
