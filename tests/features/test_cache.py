"""The worker-held state: reads only misses, marks what changed, stays bounded."""
from features.cache import StateCache
from features.state import ItemStats, OnlineState, SessionState, UserStats


class FakeStore:
    def __init__(self):
        self.rows = OnlineState()
        self.reads: list[tuple[list[str], list[str], list[str]]] = []

    def read(self, session_ids, item_ids, user_ids):
        self.reads.append((session_ids, item_ids, user_ids))
        return OnlineState({s: self.rows.sessions.get(s, SessionState()) for s in session_ids},
                           {i: self.rows.items.get(i, ItemStats()) for i in item_ids}, {})

    def write(self, state):
        self.rows.sessions.update(state.sessions)
        self.rows.items.update(state.items)


async def test_only_misses_are_read_and_only_changes_are_dirty():
    store = FakeStore()
    store.rows.items["a"] = ItemStats(4, 0, "c1")
    cache = StateCache(store)
    state = await cache.load(["s1"], ["a", "b"], [])
    assert state.items["a"] == ItemStats(4, 0, "c1")
    state.items["b"] = ItemStats(1, 0, None)
    cache.update(state)
    await cache.load(["s1"], ["a", "b", "c"], [])
    assert store.reads == [(["s1"], ["a", "b"], []), ([], ["c"], [])]
    assert cache.take_dirty().items == {"b": ItemStats(1, 0, None)}
    assert cache.take_dirty().items == {}


async def test_a_failed_write_keeps_the_latest_value_dirty():
    cache = StateCache(FakeStore())
    state = await cache.load(["s1"], [], [])
    state.sessions["s1"] = SessionState(item_ids=("a",))
    cache.update(state)
    taken = cache.take_dirty()
    state.sessions["s1"] = SessionState(item_ids=("a", "b"))
    cache.update(state)
    cache.restore_dirty(taken)
    assert cache.take_dirty().sessions == {"s1": SessionState(item_ids=("a", "b"))}


async def test_memory_is_bounded_but_unwritten_state_is_never_dropped():
    now = [0.0]
    cache = StateCache(FakeStore(), max_entries=3, idle_s=60, clock=lambda: now[0])
    state = await cache.load([f"s{n}" for n in range(5)], [], [])
    state.sessions["s0"] = SessionState(item_ids=("x",))  # oldest, but not yet in Feast
    cache.update(state)
    assert cache.evict() == 2 and set(cache.sessions.values) == {"s0", "s3", "s4"}
    now[0] = 120.0  # everything idle
    assert cache.evict() == 2 and set(cache.sessions.values) == {"s0"}


async def test_an_erasure_drops_the_user_and_every_session_memory_knows_for_them_even_unwritten():
    cache = StateCache(FakeStore())
    state = await cache.load(["s1", "s2", "s3"], [], [])
    state.users["u1"] = UserStats(3, 2, ("s1", "s2"))
    state.sessions["s1"] = SessionState(item_ids=("a",))  # dirty: not yet in the store
    cache.update(state)
    assert cache.drop(["s9"], ["u1"]) == ["s9", "s1", "s2"]
    assert set(cache.sessions.values) == {"s3"} and "u1" not in cache.users.values
    assert cache.take_dirty().sessions == {}  # nothing of theirs is written back later


def test_after_a_rebalance_only_unwritten_entries_stay():
    cache = StateCache(FakeStore())
    cache.update(OnlineState({"s1": SessionState(event_count=1), "s2": SessionState(event_count=2)}))
    cache.take_dirty()
    cache.update(OnlineState({"s2": SessionState(event_count=3)}))
    assert cache.forget_clean() == 1 and list(cache.sessions.values) == ["s2"]
