"""The checkpoint: tallies forwarded in (partition, offset) order, then state written, then events
acknowledged; the outbox and its routing; erasure and rebalance."""
import logging

from prometheus_client import REGISTRY

from contract.messages import Tally, TallyBatch
from contract.settings import Settings
from features.cache import StateCache
from features.state import OnlineState, SessionState
from features.store import OnlineFeatures
from stream.checkpoint import SESSIONS, Checkpoint, TallyOutbox, item_key, route, user_key
from stream.counters import Counters


def tally(n: int, item: str, user: str | None = "u1", partition: int = 0) -> Tally:
    return Tally(event_id=f"e{n}", event_type="view", session_id="s1", user_id=user, item_id=item, category_id=None,
                 session_is_new=n == 0, source_partition=partition, source_offset=n)


class RecordingStore:
    """A feature store that records each call in a log shared with the other fakes; it can fail."""

    def __init__(self, calls: list):
        self.calls, self.down = calls, False

    def read(self, session_ids, item_ids, user_ids):
        return OnlineState({s: SessionState() for s in session_ids}, {}, {})

    def write(self, state):
        if self.down:
            raise ConnectionError("redis is down")
        self.calls.append(("write", sorted(state.sessions) + sorted(state.items) + sorted(state.users)))

    def erase(self, session_ids, user_ids):
        self.calls.append(("erase", sorted(session_ids), sorted(user_ids)))
        return {"session_state": len(session_ids), "user_stats": len(user_ids)}

    def purge_expired(self):
        return 0


class Recorder:
    """The checkpoint's collaborators, each call logged in order: the tally sender, the store, the ack."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.store = RecordingStore(self.calls)
        self.broker_down = False

    async def send_tallies(self, routed):
        if self.broker_down:
            raise ConnectionError("kafka is down")
        sent = [(t.source_partition, t.source_offset) for value in routed["item"].values()
                for t in TallyBatch.model_validate_json(value).tallies]
        self.calls.append(("forward", sorted(sent)))

    async def ack(self, event):
        self.calls.append(("ack", event))

    def checkpoint(self) -> tuple[Checkpoint, StateCache]:
        checkpoint = Checkpoint(self.send_tallies, partitions=1)  # one partition: forwards keep their order
        cache = StateCache(self.store)
        checkpoint.track(SESSIONS, cache, self.store, self.ack)
        return checkpoint, cache


async def change(cache: StateCache, *session_ids: str) -> None:
    """What a fold does to the worker's memory: these sessions changed (dirty)."""
    state = await cache.load(list(session_ids))
    for s in session_ids:
        state.sessions[s] = SessionState(item_ids=(f"item-of-{s}",))
    cache.update(state)


def forward_failures() -> float:
    return REGISTRY.get_sample_value("reco_tally_forward_failures_total", {"error": "ConnectionError"}) or 0.0


async def test_commit_forwards_tallies_in_offset_order_then_writes_the_state_then_acknowledges():
    recorder = Recorder()
    checkpoint, cache = recorder.checkpoint()
    await change(cache, "s1", "s2")
    checkpoint.add([tally(7, "a"), tally(8, "b")], ["e7", "e8"])
    checkpoint.add([tally(3, "a")], ["e3"])  # deferred events, folded late: earlier offsets
    await checkpoint.commit()
    assert recorder.calls == [
        ("forward", [(0, 3), (0, 7), (0, 8)]),  # 1. tallies, in (partition, offset) order
        ("write", ["s1", "s2"]),                  # 2. the state
        ("ack", "e7"), ("ack", "e8"), ("ack", "e3"),  # 3. the events that waited for both
    ]
    recorder.calls.clear()
    await checkpoint.commit()  # nothing new: nothing sent, written or acknowledged twice
    assert recorder.calls == []


async def test_a_failed_forward_is_counted_and_its_events_wait_for_the_next_commit():
    recorder = Recorder()
    checkpoint, cache = recorder.checkpoint()
    await change(cache, "s1")
    checkpoint.add([tally(1, "a")], ["e1"])
    recorder.broker_down = True
    before = forward_failures()
    await checkpoint.commit()
    assert forward_failures() == before + 1
    assert recorder.calls == [("write", ["s1"])]  # the state is written; e1 is not acknowledged
    recorder.broker_down = False
    checkpoint.add([tally(2, "a")], ["e2"])
    recorder.calls.clear()
    await checkpoint.commit()
    assert recorder.calls == [("forward", [(0, 1), (0, 2)]), ("ack", "e1"), ("ack", "e2")]


async def test_a_failed_write_keeps_the_forwarded_events_unacknowledged_until_a_write_succeeds():
    recorder = Recorder()
    checkpoint, cache = recorder.checkpoint()
    await change(cache, "s1")
    checkpoint.add([tally(1, "a")], ["e1"])
    recorder.store.down = True
    await checkpoint.commit()
    assert recorder.calls == [("forward", [(0, 1)])]
    recorder.store.down = False
    await checkpoint.commit()
    assert recorder.calls == [("forward", [(0, 1)]), ("write", ["s1"]), ("ack", "e1")]  # not forwarded twice


async def test_nothing_is_forwarded_or_acknowledged_while_a_hold_is_on():
    recorder = Recorder()
    checkpoint, cache = recorder.checkpoint()
    deferred = [True]
    checkpoint.hold_while(lambda: deferred[0])
    await change(cache, "s1")
    checkpoint.add([tally(5, "a")], ["e5"])
    await checkpoint.commit()
    assert recorder.calls == [("write", ["s1"])]
    deferred[0] = False
    checkpoint.add([tally(4, "a")], ["e4"])
    await checkpoint.commit()
    assert recorder.calls[1:] == [("forward", [(0, 4), (0, 5)]), ("ack", "e5"), ("ack", "e4")]


async def test_a_counters_batch_is_acknowledged_after_its_agents_write():
    recorder = Recorder()
    checkpoint, _ = recorder.checkpoint()
    counters_cache = StateCache(recorder.store)
    checkpoint.track("item", counters_cache, recorder.store, recorder.ack)
    await change(counters_cache, "x")
    checkpoint.counted("item", ["tally-batch-1"])
    assert recorder.calls == []
    await checkpoint.commit()
    assert recorder.calls == [("write", ["x"]), ("ack", "tally-batch-1")]


async def test_forget_erases_every_agents_memory_and_rows_and_unnames_the_users_tallies():
    recorder = Recorder()
    checkpoint, cache = recorder.checkpoint()
    counters_cache = StateCache(recorder.store)
    checkpoint.track("user", counters_cache, recorder.store, recorder.ack)
    await change(cache, "s1", "s2")
    checkpoint.add([tally(1, "a", user="u1"), tally(2, "b", user="u2")], ["e1", "e2"])
    deleted = await checkpoint.forget(["s1"], ["u2"])
    assert deleted == {SESSIONS: {"session_state": 1, "user_stats": 1}, "user": {"session_state": 1, "user_stats": 1}}
    assert recorder.calls == [("erase", ["s1"], ["u2"]), ("erase", ["s1"], ["u2"])]
    assert "s1" not in cache.sessions.values and "s2" in cache.sessions.values
    assert [(t.item_id, t.user_id) for t in checkpoint.outbox.tallies] == [("a", "u1"), ("b", None)]
    recorder.calls.clear()
    await checkpoint.commit()  # the erased session is not written back
    assert recorder.calls[:2] == [("forward", [(0, 1), (0, 2)]), ("write", ["s2"])]


async def test_on_revoke_commits_then_forgets_what_is_written(caplog):
    recorder = Recorder()
    checkpoint, cache = recorder.checkpoint()
    await change(cache, "s1")
    checkpoint.add([tally(1, "a")], ["e1"])
    with caplog.at_level(logging.INFO, logger="stream.checkpoint"):
        await checkpoint.on_revoke()
    assert recorder.calls == [("forward", [(0, 1)]), ("write", ["s1"]), ("ack", "e1")]
    assert len(cache) == 0  # read again from Feast if the partition comes back
    assert "rebalance: 1 entries forgotten" in caplog.text


async def test_on_revoke_keeps_what_could_not_be_written():
    recorder = Recorder()
    checkpoint, cache = recorder.checkpoint()
    await change(cache, "s1")
    recorder.store.down = True
    await checkpoint.on_revoke()
    assert "s1" in cache.sessions.values  # dirty: still to be written, never dropped unwritten


async def test_the_outbox_sends_deferred_events_before_later_ones_of_their_partition(tmp_path):
    """Events deferred through a Redis outage are folded after later events of their partition:
    taken in offset order, every one of them is counted, none skipped as already counted."""
    outbox = TallyOutbox()
    outbox.add([tally(5, "a"), tally(6, "a"), tally(2, "a", partition=1)], ["batch"])
    outbox.add([tally(3, "a"), tally(4, "a")], ["deferred"])
    tallies, events = outbox.take()
    assert [(t.source_partition, t.source_offset) for t in tallies] == [(0, 3), (0, 4), (0, 5), (0, 6), (1, 2)]
    assert events == ["batch", "deferred"] and outbox.take() == ([], [])

    features = OnlineFeatures(Settings(run_dir=tmp_path, online_store="sqlite"))
    features.apply()
    counters = Counters(StateCache(features), "item")
    await counters.count(list(route(tallies, item_key, 8).values()))
    assert counters.state.items.values["a"].interaction_count == 5


def test_unsent_tallies_go_first_next_time_and_an_erased_user_keeps_only_item_counts():
    outbox = TallyOutbox()
    outbox.add([tally(1, "a", user="u1")], ["e1"])
    taken = outbox.take()
    outbox.add([tally(2, "b", user="u2")], ["e2"])
    outbox.put_back(*taken)  # the broker failed
    outbox.forget_users(["u2"])
    tallies, events = outbox.take()
    assert [(t.item_id, t.user_id) for t in tallies] == [("a", "u1"), ("b", None)] and events == ["e1", "e2"]
    by_user = route(tallies, user_key, 8).values()
    assert [t.item_id for value in by_user for t in TallyBatch.model_validate_json(value).tallies] == ["a"]
