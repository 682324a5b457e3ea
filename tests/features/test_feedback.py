"""Online attribution, pure: which recommendation a later event acted on."""
from contract.messages import Event
from features.feedback import attribute, rank_bucket, remember
from features.state import SessionState, Shown

WINDOW_MS = 30 * 60 * 1000


def ev(item: str, ts: int, kind: str = "click") -> Event:
    return Event(event_id=f"e{ts}", event_type=kind, session_id="s1", item_id=item, ts=ts)


def test_the_most_recent_message_holding_the_item_gives_version_and_rank():
    shown = (Shown(1_000, "1", ("a", "b", "c")), Shown(2_000, "2", ("c", "d")))
    hit = attribute(shown, ev("c", 3_000), WINDOW_MS)
    assert hit is not None and (hit.event_type, hit.model_version, hit.rank) == ("click", "2", 1)
    hit = attribute(shown, ev("b", 3_000, "purchase"), WINDOW_MS)
    assert hit is not None and (hit.event_type, hit.model_version, hit.rank) == ("purchase", "1", 2)
    assert attribute(shown, ev("z", 3_000), WINDOW_MS) is None


def test_only_within_the_window_and_never_before_the_recommendation():
    shown = (Shown(10_000, "1", ("a",)),)
    assert attribute(shown, ev("a", 10_000 + WINDOW_MS), WINDOW_MS) is not None
    assert attribute(shown, ev("a", 10_001 + WINDOW_MS), WINDOW_MS) is None
    assert attribute(shown, ev("a", 9_999), WINDOW_MS) is None  # an out-of-order earlier event


def test_rank_buckets():
    assert [rank_bucket(r) for r in (1, 2, 5, 6, 10, 11)] == ["1", "2-5", "2-5", "6-10", "6-10", "11+"]


def test_remember_keeps_the_last_messages_and_counts_hits():
    session = SessionState(item_ids=("a",), event_count=1)
    for n in range(7):
        session = remember(session, Shown(n, "1", (f"i{n}",)), keep=5, attributed=n % 2 == 0)
    assert [s.ts for s in session.recommended] == [2, 3, 4, 5, 6]
    assert session.attributed_count == 4 and session.item_ids == ("a",)


def test_shown_survives_its_string_encoding():
    shown = Shown(1_700_000_000_000, "12", ("a", 'b "q"', "ü"))
    assert Shown.decode(shown.encode()) == shown
