"""The worker's checkpoint: what makes the events it has published durable, in one order.

An event is acknowledged (so Faust may commit its offset) only once its recommendation is
delivered, its share of the item and user counters (its tally) has reached the counters' owners,
and the state it changed is in Feast. A worker killed in between gets the event again from Kafka
and its state from Feast, which recognises it by id and does not count it twice; a counter
recognises a tally it has counted by its (partition, offset) on ``events`` (stream/counters.py).

:class:`Checkpoint` holds, for the whole worker process: the tally outbox (the tallies of
published batches and the events that wait for them), the routing of tallies to the partitions
of the tallies topics, and one write-behind per agent (stream/writeback.py: its state in memory,
its Feast writer, its acknowledgement). :meth:`Checkpoint.commit` runs the three steps in order.
Writing at each commit instead of each batch takes Feast's cost off the path a shopper waits on.
"""
from __future__ import annotations

import asyncio
import logging
import zlib
from functools import partial
from typing import Any, Awaitable, Callable

from contract.messages import Tally, TallyBatch
from features.cache import FeatureStoreLike, StateCache
from stream import metrics
from stream.counters import Kind
from stream.retry import until_done
from stream.writeback import WriteBehind

log = logging.getLogger(__name__)
SESSIONS = "sessions"  # the events agent's write-behind; the counters' are named by their Kind
SendTallies = Callable[[dict[Kind, dict[int, bytes]]], Awaitable[None]]


class TallyOutbox:
    """The tallies of published batches, sent to the counters' owners together at each commit
    (one message per tallies partition, not one per batch), with the events that are acknowledged
    only once their tallies are sent."""

    def __init__(self) -> None:
        self.tallies: list[Tally] = []
        self.events: list[Any] = []  # what the write-behind acknowledges (Faust events)

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
        """Taken but not sent (the broker failed): they go out with the next commit."""
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


class Checkpoint:
    def __init__(self, send_tallies: SendTallies, partitions: int):
        """``send_tallies``: sends {kind: {partition: message}} to the tallies topics and returns
        once the broker has acknowledged every message; ``partitions``: those of each tallies topic."""
        self.send_tallies, self.partitions = send_tallies, partitions
        self.outbox = TallyOutbox()
        self.writebacks: dict[str, WriteBehind] = {}
        self.holds: list[Callable[[], bool]] = []
        # A commit timer and a rebalance may both forward: one at a time, or a later take's
        # tallies could reach a partition before an earlier one's.
        self.forwarding = asyncio.Lock()

    def track(self, name: str, cache: StateCache, store: FeatureStoreLike, ack: Callable[[Any], Awaitable[Any]]
              ) -> None:
        """An agent's state (``cache``, written to ``store``) and how its events are acknowledged.
        ``SESSIONS`` is the events agent's; "item" and "user" the counters'. A restarted agent
        replaces its predecessor's."""
        self.writebacks[name] = WriteBehind(cache, store, ack)

    def hold_while(self, pending: Callable[[], bool]) -> None:
        """Tallies are not forwarded while ``pending()``: the worker's deferred events, folded
        later, must reach the counters before the later events of their partitions."""
        self.holds.append(pending)

    def add(self, tallies: list[Tally], events: list[Any]) -> None:
        """A published batch of the events agent (or its deferred events, folded at last): its
        tallies, and its events, acknowledged once those are forwarded and the state written."""
        self.outbox.add(tallies, events)

    def counted(self, name: str, events: list[Any]) -> None:
        """A batch of a counters agent, counted in memory: acknowledged after the next write."""
        self.writebacks[name].published(events)

    async def commit(self) -> None:
        """Makes what the worker has done durable, in this order:

        1. forward the outbox's tallies to the counters' owners, in (partition, offset) order on
           ``events`` (not while events are deferred: theirs go first); their events then wait for
           the sessions' write. A failed send keeps them for the next commit;
        2. write every agent's changed state to Feast;
        3. acknowledge the events whose tallies were forwarded (step 1) and whose state was written
           (step 2). A failed write keeps the state dirty and its events unacknowledged.

        Steps 2 and 3 run per agent (WriteBehind.flush: write, then acknowledge)."""
        await self.forward()
        for writeback in list(self.writebacks.values()):
            await writeback.flush()

    async def forward(self) -> None:
        """Step 1 of :meth:`commit`."""
        async with self.forwarding:
            if any(pending() for pending in self.holds) or not self.outbox.events:
                return
            tallies, events = self.outbox.take()
            routed: dict[Kind, dict[int, bytes]] = {"item": route(tallies, item_key, self.partitions),
                                                    "user": route(tallies, user_key, self.partitions)}
            try:
                await self.send_tallies(routed)
            except Exception as exc:  # the broker: the next commit sends them (a counter skips repeats)
                self.outbox.put_back(tallies, events)
                metrics.TALLY_FORWARD_FAILURES.labels(type(exc).__name__).inc()
                log.warning("forwarding %d tallies failed, trying at the next flush: %r", len(tallies), exc)
                return
            self.writebacks[SESSIONS].published(events)

    async def forget(self, session_ids: list[str], user_ids: list[str]) -> dict[str, dict[str, int]]:
        """An erasure: these users' tallies no longer name them, and every agent forgets these
        sessions and users in memory, then deletes their rows (under its flush lock, so a write
        under way cannot put them back). Returns the rows deleted, per agent."""
        self.outbox.forget_users(user_ids)
        return {name: await until_done(partial(writeback.erase, session_ids), user_ids)
                for name, writeback in list(self.writebacks.items())}

    async def on_revoke(self) -> None:
        """Revoked partitions may go to another worker, which then changes their sessions and
        counters: commit what this worker changed and forget the rest, so state held from before
        is never used again if they come back."""
        await self.commit()
        for writeback in list(self.writebacks.values()):
            log.info("rebalance: %d entries forgotten", writeback.cache.forget_clean())

    def evict(self) -> None:
        """Drops entries idle too long, or beyond the cap, that are written already."""
        for writeback in list(self.writebacks.values()):
            writeback.cache.evict()

    async def purge_expired(self) -> None:
        """Deletes rows past their time to live where the store does not expire them itself."""
        for writeback in list(self.writebacks.values())[:1]:  # one purge deletes every view's old rows
            await writeback.purge_expired()
