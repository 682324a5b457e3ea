"""Write-behind: events are acknowledged only after the state they changed is in the store."""
import asyncio
import threading

from features.cache import StateCache
from features.state import OnlineState, SessionState, UserStats
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


class SlowStore(FlakyStore):
    """Logs each call; a write blocks until released, as a slow Redis would."""

    def __init__(self):
        super().__init__()
        self.log: list[tuple] = []
        self.release = threading.Event()

    def write(self, state):
        self.release.wait(5)
        self.log.append(("write", sorted(state.sessions)))

    def erase(self, session_ids, user_ids):
        self.log.append(("erase", sorted(session_ids), sorted(user_ids)))
        return {"session_state": len(session_ids), "user_stats": len(user_ids)}


async def test_an_erasure_waits_for_a_write_under_way_and_nothing_is_written_back_after_it():
    store = SlowStore()
    cache = StateCache(store)
    writeback = WriteBehind(cache, store, ack=lambda event: asyncio.sleep(0))
    state = await cache.load(["s1", "s2"], [], [])
    state.sessions.update(s1=SessionState(item_ids=("a",)), s2=SessionState(item_ids=("b",)))
    state.users["u1"] = UserStats(2, 1, ("s1",))
    cache.update(state)
    flushing = asyncio.create_task(writeback.flush())  # takes s1 and s2, then blocks in write
    await asyncio.sleep(0.05)
    erasing = asyncio.create_task(writeback.erase([], ["u1"]))
    await asyncio.sleep(0.05)
    store.release.set()
    await flushing
    assert await erasing == {"session_state": 1, "user_stats": 1}
    assert await writeback.flush()
    assert store.log == [("write", ["s1", "s2"]), ("erase", ["s1"], ["u1"])]
    assert "s1" not in cache.sessions.values and "s2" in cache.sessions.values
