"""The worker's own copy of the online state of the sessions, items and users it serves.

The worker that owns a session's partition sees every event of that session, so the state can
live here: read from Feast only on a miss, changed in memory, and written back to Feast in the
background, in larger batches (stream/writeback.py). Memory stays bounded: beyond ``max_entries``
per table, and after ``idle_s`` without use, the least recently used entries that Feast already
holds are dropped (a later miss reads them back).
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Generic, Protocol, Sequence, TypeVar

from redis.exceptions import RedisError

from features.state import ItemStats, OnlineState, SessionState, UserStats

T = TypeVar("T")
# What a read of an unreachable online store raises (Redis down, a refused connection).
STORE_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError)


class FeatureStoreLike(Protocol):
    def read(self, session_ids: list[str], item_ids: list[str], user_ids: list[str]) -> OnlineState: ...
    def write(self, state: OnlineState) -> None: ...
    def erase(self, session_ids: list[str], user_ids: list[str]) -> dict[str, int]: ...
    def purge_expired(self) -> int: ...


class Table(Generic[T]):
    """Entity id -> state, in least-recently-used order, with the ids changed since the last write."""

    def __init__(self, max_entries: int, idle_s: float, clock: Callable[[], float]):
        self.values: OrderedDict[str, T] = OrderedDict()
        self.last_used: dict[str, float] = {}
        self.dirty: set[str] = set()
        self.max_entries, self.idle_s, self.clock = max_entries, idle_s, clock

    def missing(self, ids: Sequence[str]) -> list[str]:
        return [i for i in ids if i not in self.values]

    def fill(self, loaded: dict[str, T]) -> None:
        """Values read from the store, for ids still missing (a newer in-memory value wins)."""
        for key, value in loaded.items():
            self.values.setdefault(key, value)

    def get(self, ids: Sequence[str]) -> dict[str, T]:
        now = self.clock()
        for key in ids:
            self.values.move_to_end(key)
            self.last_used[key] = now
        return {key: self.values[key] for key in ids}

    def put(self, changed: dict[str, T]) -> None:
        for key, value in changed.items():
            if self.values.get(key) is not value:
                self.values[key] = value
                self.dirty.add(key)

    def keep(self, values: dict[str, T]) -> None:
        """Holds these values without writing them (a view of state another worker owns)."""
        self.values.update(values)

    def take_dirty(self) -> dict[str, T]:
        taken = {key: self.values[key] for key in self.dirty}
        self.dirty.clear()
        return taken

    def mark_dirty(self, keys: Any) -> None:
        self.dirty.update(k for k in keys if k in self.values)

    def drop(self, keys: Sequence[str]) -> int:
        """Forgets these entries, written or not (an erasure); returns how many were held."""
        held = [key for key in keys if key in self.values]
        for key in held:
            del self.values[key]
            self.last_used.pop(key, None)
            self.dirty.discard(key)
        return len(held)

    def forget_clean(self) -> int:
        """Drops every entry already written; returns how many."""
        clean = [key for key in self.values if key not in self.dirty]
        for key in clean:
            del self.values[key]
            self.last_used.pop(key, None)
        return len(clean)

    def evict(self) -> int:
        """Drops clean entries from the least recently used end; returns how many."""
        cutoff, victims = self.clock() - self.idle_s, list[str]()
        for key in self.values:
            if len(self.values) - len(victims) <= self.max_entries and self.last_used.get(key, 0.0) >= cutoff:
                break
            if key not in self.dirty:
                victims.append(key)
        for key in victims:
            del self.values[key]
            self.last_used.pop(key, None)
        return len(victims)


class StateCache:
    def __init__(self, store: FeatureStoreLike, max_entries: int = 200_000, idle_s: float = 1800.0,
                 clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.sessions: Table[SessionState] = Table(max_entries, idle_s, clock)
        self.items: Table[ItemStats] = Table(max_entries, idle_s, clock)
        self.users: Table[UserStats] = Table(max_entries, idle_s, clock)
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="feast-read")  # Feast's client is not shared

    async def load(self, session_ids: Sequence[str] = (), item_ids: Sequence[str] = (),
                   user_ids: Sequence[str] = ()) -> OnlineState:
        """The state of these entities, reading only the ones not in memory from the store."""
        missing = (self.sessions.missing(session_ids), self.items.missing(item_ids), self.users.missing(user_ids))
        if any(missing):
            loaded = await asyncio.get_running_loop().run_in_executor(self._reader, self.store.read, *missing)
            self.sessions.fill(loaded.sessions)
            self.items.fill(loaded.items)
            self.users.fill(loaded.users)
        return OnlineState(self.sessions.get(session_ids), self.items.get(item_ids), self.users.get(user_ids))

    async def load_available(self, session_ids: Sequence[str] = (), item_ids: Sequence[str] = ()
                             ) -> tuple[OnlineState, set[str]]:
        """Like :meth:`load`; while the store cannot be read, what memory holds, and the ids of
        the sessions it does not hold (the caller serves those provisionally)."""
        try:
            return await self.load(session_ids, item_ids), set()
        except STORE_ERRORS:
            held_sessions = [s for s in session_ids if s in self.sessions.values]
            held_items = [i for i in item_ids if i in self.items.values]
            state = OnlineState(self.sessions.get(held_sessions), self.items.get(held_items), {})
            return state, set(session_ids) - set(held_sessions)

    def update(self, state: OnlineState) -> None:
        """Keeps the entities a batch changed; they are written at the next flush."""
        self.sessions.put(state.sessions)
        self.items.put(state.items)
        self.users.put(state.users)

    def take_dirty(self) -> OnlineState:
        return OnlineState(self.sessions.take_dirty(), self.items.take_dirty(), self.users.take_dirty())

    def restore_dirty(self, state: OnlineState) -> None:
        """After a failed write: those entities are written again next time (with their latest value)."""
        self.sessions.mark_dirty(state.sessions)
        self.items.mark_dirty(state.items)
        self.users.mark_dirty(state.users)

    def drop(self, session_ids: Sequence[str], user_ids: Sequence[str]) -> list[str]:
        """Forgets these users, their sessions (as far as memory knows them, which may be newer
        than Feast) and these sessions; returns every session id that was dropped or asked for."""
        sessions = list(dict.fromkeys([*session_ids, *(s for u in user_ids if u in self.users.values
                                                       for s in self.users.values[u].session_ids)]))
        self.sessions.drop(sessions)
        self.users.drop(user_ids)
        return sessions

    def evict(self) -> int:
        return self.sessions.evict() + self.items.evict() + self.users.evict()

    def forget_clean(self) -> int:
        """After a rebalance another worker may change what this one held: read it again on use."""
        return self.sessions.forget_clean() + self.items.forget_clean() + self.users.forget_clean()

    def __len__(self) -> int:
        return len(self.sessions.values) + len(self.items.values) + len(self.users.values)
