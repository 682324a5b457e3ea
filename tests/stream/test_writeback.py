"""Write-behind: events are acknowledged only after the state they changed is in the store."""
from features.cache import StateCache
from features.state import OnlineState, SessionState
from stream.writeback import WriteBehind


class FlakyStore:
    def __init__(self):
        self.down = False
        self.written: list[OnlineState] = []

    def read(self, session_ids, item_ids, user_ids):
        return OnlineState({s: SessionState() for s in session_ids}, {}, {})

    def write(self, state):
        if self.down:
            raise ConnectionError("redis is down")
        self.written.append(state)


async def test_events_wait_for_a_successful_write_and_nothing_is_acked_twice():
    store, acked = FlakyStore(), []

    async def ack(event):
        acked.append(event)

    cache = StateCache(store)
    writeback = WriteBehind(cache, store, ack)
    state = await cache.load(["s1"], [], [])
    state.sessions["s1"] = SessionState(item_ids=("a",))
    cache.update(state)
    writeback.published(["e1"])

    store.down = True
    assert not await writeback.flush() and acked == []
    state.sessions["s1"] = SessionState(item_ids=("a", "b"))
    cache.update(state)
    writeback.published(["e2"])

    store.down = False
    assert await writeback.flush() and acked == ["e1", "e2"]
    assert store.written[-1].sessions == {"s1": SessionState(item_ids=("a", "b"))}
    assert await writeback.flush() and acked == ["e1", "e2"]
