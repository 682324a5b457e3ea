"""Write-behind of the worker's state to Feast, and the acknowledgements that wait for it.

An event is acknowledged (so its offset can be committed) only once its recommendation is
delivered AND the state it changed is in Feast: a worker killed in between reprocesses the event
from Feast's state, which recognises it by id and does not count it twice. One per agent;
stream/checkpoint.py:Checkpoint.commit runs its flush as the write and the acknowledgement that
follow the forwarding of tallies.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from features.cache import FeatureStoreLike, StateCache
from stream import metrics

log = logging.getLogger(__name__)


class WriteBehind:
    def __init__(self, cache: StateCache, store: FeatureStoreLike, ack: Callable[[Any], Awaitable[Any]]):
        self.cache, self.store, self.ack = cache, store, ack
        self.pending: list[Any] = []  # published events whose state is not yet written
        self.oldest_change: float | None = None
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="feast-write")
        self._lock = asyncio.Lock()

    def published(self, events: list[Any]) -> None:
        """These events' recommendations are delivered; acknowledge them after the next write."""
        self.pending.extend(events)
        if self.oldest_change is None:
            self.oldest_change = time.monotonic()

    async def erase(self, session_ids: list[str], user_ids: list[str]) -> dict[str, int]:
        """Forgets these sessions and users, in memory and in Feast. Under the flush lock, so a
        write that began before cannot put their rows back after the delete."""
        async with self._lock:
            sessions = self.cache.drop(session_ids, user_ids)
            return await asyncio.get_running_loop().run_in_executor(self._writer, self.store.erase, sessions,
                                                                    user_ids)

    async def purge_expired(self) -> int:
        """Deletes rows past their time to live where the store does not expire them itself."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, self.store.purge_expired)
        except Exception as exc:  # the store is down: the next round deletes them
            log.warning("purging expired rows failed: %r", exc)
            return 0

    async def flush(self) -> bool:
        """Writes everything changed so far, then acknowledges what waited for it. On failure the
        state stays dirty and the events unacknowledged, for the next flush; returns success."""
        async with self._lock:
            events, self.pending = self.pending, []
            since, self.oldest_change = self.oldest_change, None
            dirty = self.cache.take_dirty()
            try:
                if dirty.sessions or dirty.items or dirty.users:
                    with metrics.timed("write_state"):
                        await asyncio.get_running_loop().run_in_executor(self._writer, self.store.write, dirty)
            except Exception as exc:  # Redis or Feast down: keep everything for the next flush
                self.cache.restore_dirty(dirty)
                self.pending[:0] = events
                self.oldest_change = since
                metrics.FEATURE_WRITE_FAILURES.labels(type(exc).__name__).inc()
                log.warning("feature write failed, %d events wait for the next flush: %r", len(events), exc)
                return False
            for event in events:
                await self.ack(event)
            if since is not None:
                metrics.FEATURE_FRESHNESS.observe(time.monotonic() - since)
            metrics.STATE_ENTRIES.set(len(self.cache))
            return True
