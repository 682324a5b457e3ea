"""tools.live_quality's scoring of the recommendations read back (the live replay needs the stack:
tests/stack/test_session_replay.py)."""
import pytest

from serving.model.sessions import Interaction, Session
from tools.live_quality import score_recommendations


def session(sid: str, items: list[str]) -> Session:
    return Session(sid, None, [Interaction(item, "view", n) for n, item in enumerate(items)])


def test_each_recommendation_is_scored_against_the_sessions_next_item():
    replay = [session("t0", ["a", "b", "c"]), session("t1", ["d", "e"])]
    recs = {"p-t0-0": ["x", "b"] + [f"f{n}" for n in range(8)],  # b at rank 2
            "p-t0-1": ["c"],                                       # c at rank 1
            "p-t0-2": ["z"],                                       # the last event: no case
            "p-t1-1": ["y"]}                                       # t1's first event has none: lost
    got = score_recommendations(replay, "p-", recs)
    assert got["cases"] == 3 and got["lost"] == 1
    assert got["hr@10"] == pytest.approx(2 / 3) and got["mrr@10"] == pytest.approx((1 / 2 + 1) / 3)


def test_an_item_past_the_tenth_slot_is_a_miss():
    recs = {"p-t0-0": [f"f{n}" for n in range(10)] + ["b"]}
    got = score_recommendations([session("t0", ["a", "b"])], "p-", recs)
    assert got["hr@10"] == 0.0 and got["mrr@10"] == 0.0
