"""Live item popularity seen by this worker: all-time counts and a decayed 'trending' score."""
from __future__ import annotations

import heapq
import math


class Popularity:
    def __init__(self, top_n: int = 100, half_life_ms: int = 10 * 60_000, refresh_every: int = 256):
        self.top_n = top_n
        self.decay = math.log(2) / half_life_ms
        self.refresh_every = refresh_every
        self.counts: dict[str, int] = {}
        self.trend: dict[str, tuple[float, int]] = {}  # item -> (decayed count, as of ts)
        self.now_ms = 0
        self._popular: list[str] = []
        self._popular_set: set[str] = set()  # membership is asked for every recommended item
        self._trending: set[str] = set()
        self._stale = 0

    def observe(self, item_id: str, total_count: int, ts: int) -> None:
        self.counts[item_id] = total_count
        self.now_ms = max(self.now_ms, ts)
        score, as_of = self.trend.get(item_id, (0.0, ts))
        self.trend[item_id] = (score * math.exp(-self.decay * max(0, ts - as_of)) + 1.0, ts)
        self._stale += 1
        if self._stale >= self.refresh_every or len(self.counts) <= self.top_n:
            self.refresh()

    def refresh(self) -> None:
        self._stale = 0
        self._popular = heapq.nlargest(self.top_n, self.counts, key=self.counts.__getitem__)
        self._popular_set = set(self._popular)

        def current(item: str) -> float:
            score, as_of = self.trend[item]
            return score * math.exp(-self.decay * max(0, self.now_ms - as_of))

        # Trending: among the hottest now but not already the all-time most popular.
        hottest = heapq.nlargest(self.top_n // 5 or 1, self.trend, key=current)
        self._trending = set(hottest) - set(self._popular[: self.top_n // 5 or 1])

    def top(self, n: int) -> list[str]:
        return self._popular[:n]

    def is_popular(self, item_id: str) -> bool:
        return item_id in self._popular_set

    def is_trending(self, item_id: str) -> bool:
        return item_id in self._trending
