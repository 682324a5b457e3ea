"""The owners of the item and user counters: one agent per kind consumes the tallies keyed by
item (or user), so each item's (user's) counters change in one worker only, whatever the number of
workers, and are written to Feast by that worker's write-behind (stream/checkpoint.py, which also
routes the tallies to these partitions).

Counting is idempotent: a tally names its event's partition and offset on ``events``, and each
item (user) records the last offset it counted per partition (features/state.py:record_offset).
An event forwarded twice (its batch redelivered after a crash) or a tally consumed twice (the
counter's own batch redelivered) is skipped the second time.
"""
from __future__ import annotations

import logging
from typing import Callable, Literal, TypeVar

from pydantic import ValidationError

from contract.messages import Tally, TallyBatch
from features.cache import StateCache
from features.state import OnlineState, apply_item_tally, apply_user_tally
from stream import metrics
from stream.pipeline import unique

log = logging.getLogger(__name__)
Kind = Literal["item", "user"]
S = TypeVar("S")


class Counters:
    def __init__(self, state: StateCache, kind: Kind):
        self.state, self.kind = state, kind

    def parse(self, values: list[bytes]) -> list[Tally]:
        tallies = []
        for value in values:
            try:
                tallies += TallyBatch.model_validate_json(value).tallies
            except ValidationError as exc:  # only workers write these topics: a bug, not input
                metrics.TALLIES.labels(self.kind, "invalid").inc()
                log.error("skipping an invalid tally batch: %s", exc)
        return tallies

    async def count(self, values: list[bytes]) -> None:
        """Counts each tally's event once into its item's (user's) counters held in memory."""
        tallies = self.parse(values)
        if self.kind == "item":
            items = [(t.item_id, t) for t in tallies]
            held_items = (await self.state.load(item_ids=unique(k for k, _ in items))).items
            self.state.update(OnlineState(items=self.fold(held_items, items, apply_item_tally)))
        else:
            users = [(t.user_id, t) for t in tallies if t.user_id is not None]
            held_users = (await self.state.load(user_ids=unique(k for k, _ in users))).users
            self.state.update(OnlineState(users=self.fold(held_users, users, apply_user_tally)))

    def fold(self, held: dict[str, S], keyed: list[tuple[str, Tally]],
             apply: Callable[[S, Tally], S | None]) -> dict[str, S]:
        """The counters these tallies changed; a tally already counted changes nothing."""
        changed: dict[str, S] = {}
        for key, tally in keyed:
            counted = apply(changed.get(key) or held[key], tally)
            metrics.TALLIES.labels(self.kind, "repeated" if counted is None else "counted").inc()
            if counted is not None:
                changed[key] = counted
        return changed
