"""Live exposure: how the worker's recommendations spread over the items, since it started.

Every recommended slot (model pick or popular top-up) counts once for its item. Exported
(stream/metrics.py):

* ``reco_exposure_slots_total{tail}``: slots by the item's popularity. ``head``: the item's count of
  interactions seen by this worker is at least the count of the item at the 20% rank of all the
  items it has seen (ties at that boundary count as head, so the head can hold a little more than
  20%; the threshold is refreshed with the gauges). ``long``: every other item, including items the
  worker has not seen in an event. The same split as serving.offline.exposure's long-tail share,
  with the worker's live counts in place of the training counts (contract/exposure.py has both's definitions).
* ``reco_exposure_gini``: Gini coefficient of slots per item over every item the worker knows (seen
  in an event or recommended), never-recommended items included as zeros.
* ``reco_exposure_coverage_items`` / ``reco_exposure_catalogue_items``: distinct items recommended,
  and the number of items the Gini is over.

The gauges are recomputed at most every ``refresh_s`` (Prometheus scrapes every 5 s), not per
event. Memory: one counter per distinct recommended item, bounded by the catalogue (the model's
vocabulary and the items seen in events).
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable

import numpy as np

from contract.exposure import HEAD_FRACTION
from contract.exposure import gini as exposure_gini
from stream import metrics
from stream.popularity import Popularity


class Exposure:
    def __init__(self, popularity: Popularity, refresh_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.popularity = popularity
        self.counts: dict[str, int] = {}
        self.head_min = 1  # an item is head when its count is at least this (refreshed)
        self.refresh_s, self.clock = refresh_s, clock
        self.refreshed_at = -math.inf

    def observe(self, item_ids: Iterable[str]) -> None:
        """Counts each slot of the recommendations just made."""
        due = self.clock() - self.refreshed_at >= self.refresh_s
        if due:
            self.update_head()
        seen = self.popularity.counts
        head = long = 0
        for item in item_ids:
            self.counts[item] = self.counts.get(item, 0) + 1
            if seen.get(item, 0) >= self.head_min:
                head += 1
            else:
                long += 1
        metrics.EXPOSURE_SLOTS.labels("head").inc(head)
        metrics.EXPOSURE_SLOTS.labels("long").inc(long)
        if due:
            self.export()

    def refresh(self) -> dict[str, float]:
        """Recomputes the head threshold and the gauges; returns what it exported."""
        self.update_head()
        return self.export()

    def update_head(self) -> None:
        """The head threshold: the count of the item at the 20% rank of the items seen in events."""
        self.refreshed_at = self.clock()
        counts = np.fromiter(self.popularity.counts.values(), dtype=np.int64, count=len(self.popularity.counts))
        if counts.size:
            n_head = max(1, math.ceil(HEAD_FRACTION * counts.size - 1e-9))
            self.head_min = max(1, int(np.partition(counts, counts.size - n_head)[counts.size - n_head]))

    def export(self) -> dict[str, float]:
        seen = self.popularity.counts
        unseen_recommended = sum(1 for item in self.counts if item not in seen)
        catalogue = len(seen) + unseen_recommended
        gini = exposure_gini(self.counts.values(), catalogue - len(self.counts))
        metrics.EXPOSURE_GINI.set(gini)
        metrics.EXPOSURE_COVERAGE.set(len(self.counts))
        metrics.EXPOSURE_CATALOGUE.set(catalogue)
        return {"gini": gini, "coverage_items": len(self.counts), "catalogue_items": catalogue,
                "head_min": self.head_min}
