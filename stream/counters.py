"""The owners of the item and user counters: one agent per kind consumes the tallies keyed by
item (or user), so each item's (user's) counters change in one worker only, whatever the number of
workers, and are written to Feast by that worker's write-behind.

Counting is idempotent: a tally names its event's partition and offset on ``events``, and each
item (user) records the last offset it counted per partition (features/state.py:record_offset).
An event forwarded twice (its batch redelivered after a crash) or a tally consumed twice (the
counter's own batch redelivered) is skipped the second time.
"""
from __future__ import annotations

import logging
import zlib
from typing import Any, Callable, Literal, TypeVar

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



class TallyOutbox:
    """The tallies of published batches, sent to the counters' owners together at each flush
    (one message per tallies partition, not one per batch: at 200 events/s that was about ten
    messages per event, each consumed again), with the events that are acknowledged only once
    their tallies are sent."""

    def __init__(self) -> None:
        self.tallies: list[Tally] = []
        self.events: list[Any] = []  # Faust events, for the write-behind's acknowledgement

    def add(self, tallies: list[Tally], events: list[Any]) -> None:
        self.tallies += tallies
        self.events += events

    def take(self) -> tuple[list[Tally], list[Any]]:
        """Everything gathered, tallies in (partition, offset) order on ``events``: a counter skips
        an event at or below the last offset it counted, so deferred events, folded late, must
        not reach it after a later event of their partition."""
        tallies, events = sorted(self.tallies, key=lambda t: (t.source_partition, t.source_offset)), self.events
        self.tallies, self.events = [], []
        return tallies, events

    def put_back(self, tallies: list[Tally], events: list[Any]) -> None:
        """Taken but not sent (the broker failed): they go out with the next flush."""
        self.tallies[:0], self.events[:0] = tallies, events

    def forget_users(self, user_ids: list[str]) -> None:
        """An erasure: these users' tallies still count for their items, not for the users."""
        erased = set(user_ids)
        self.tallies = [t.model_copy(update={"user_id": None}) if t.user_id in erased else t for t in self.tallies]


def route(tallies: list[Tally], key: Callable[[Tally], str | None], partitions: int) -> dict[int, bytes]:
    """One message per partition of a tallies topic: each key always lands on the same partition
    (CRC-32 of the key), so one worker owns it; tallies without a key (anonymous users) are left out."""
    groups: dict[int, list[Tally]] = {}
    for tally in tallies:
        k = key(tally)
        if k is not None:
            groups.setdefault(zlib.crc32(k.encode()) % partitions, []).append(tally)
    return {partition: TallyBatch.model_construct(tallies=group).model_dump_json().encode()
            for partition, group in groups.items()}


def item_key(tally: Tally) -> str:
    return tally.item_id


def user_key(tally: Tally) -> str | None:
    return tally.user_id
