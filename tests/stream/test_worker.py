"""The worker's orchestration on the real pipeline (embedded SQLite Feast, a fake ranker), a
recording publisher and broker, and a store that can go down like Redis."""
import asyncio
import json
import logging

import pytest
from prometheus_client import REGISTRY

from contract.messages import TallyBatch
from stream.checkpoint import SESSIONS, Checkpoint
from stream.pipeline import RawMessage
from stream.worker import MAX_DEFERRED_BATCHES, Worker
from tests.stream.fakes import FlakyStore, event, make_pipeline, messages


class Broker:
    """Records what the worker publishes, the tallies it forwards and what it acknowledges."""

    def __init__(self):
        self.published: list[str] = []  # event ids of recommendations, in publication order
        self.dead: list[int] = []  # offsets of dead letters
        self.forwarded: list[tuple[int, int]] = []  # (partition, offset) of each item tally
        self.acked: list[str] = []
        self.slow_first = 0.0  # seconds the first publish takes

    async def publish(self, result):
        if self.slow_first and not self.published:
            await asyncio.sleep(self.slow_first)
        self.published += [r.event_id for r in result.recommendations]
        self.dead += [d.offset for d in result.dead_letters]

    async def send_tallies(self, routed):
        self.forwarded += [(t.source_partition, t.source_offset) for value in routed["item"].values()
                           for t in TallyBatch.model_validate_json(value).tallies]

    async def ack(self, event):
        self.acked.append(event)


def make_worker(tmp_path, **overrides) -> tuple[Worker, Broker, FlakyStore]:
    pipeline = make_pipeline(tmp_path, **overrides)
    store = FlakyStore(pipeline.state.store)
    pipeline.state.store = store
    broker = Broker()
    checkpoint = Checkpoint(broker.send_tallies, partitions=1)
    checkpoint.track(SESSIONS, pipeline.state, store, broker.ack)
    return Worker(pipeline.settings, pipeline, checkpoint, broker.publish), broker, store


async def drain(worker: Worker) -> None:
    """Waits for every batch in flight to be published."""
    while worker.in_flight:
        await worker.in_flight.popleft()


def new_sessions(first: int, n: int) -> list[RawMessage]:
    """n events, each of a session the worker does not hold, at offsets first..first + n - 1."""
    return messages([event(first + k, session=f"new{first + k}") for k in range(n)], first_offset=first)


async def test_a_batch_is_published_and_acknowledged_only_after_its_commit(tmp_path):
    worker, broker, _ = make_worker(tmp_path)
    batch = messages([event(1), b"{oops", event(2, item="i0")])
    await worker.handle(batch)
    await drain(worker)
    assert broker.published == ["e1", "e2"] and broker.dead == [1]
    assert broker.forwarded == [] and broker.acked == []  # nothing durable before the commit
    await worker.checkpoint.commit()
    assert broker.forwarded == [(0, 0), (0, 2)]
    assert broker.acked == ["p0@0", "p0@1", "p0@2"]  # the dead letter's message too, in batch order


async def test_batches_are_published_in_order_while_the_next_one_folds(tmp_path):
    worker, broker, _ = make_worker(tmp_path)
    broker.slow_first = 0.05
    await worker.handle(messages([event(1)]))
    await worker.handle(messages([event(2)], first_offset=1))  # folded while the first is still publishing
    assert len(worker.in_flight) <= worker.settings.batches_in_flight
    await drain(worker)
    assert broker.published == ["e1", "e2"]


async def test_an_outage_defers_unheld_sessions_then_folds_forwards_and_acknowledges_them_in_order(tmp_path, caplog):
    worker, broker, store = make_worker(tmp_path)
    await worker.handle(messages([event(1, "held", item="a")]))
    await drain(worker)
    await worker.checkpoint.commit()
    broker.forwarded.clear(), broker.acked.clear()

    store.down = True
    await worker.handle(messages([event(2, "held", item="b"), event(3, "new", item="c")], first_offset=1))
    await worker.handle(messages([event(4, "new", item="d"), event(5, "held", item="e")], first_offset=3))
    await drain(worker)
    assert broker.published == ["e1", "e2", "e3", "e4", "e5"]  # every event recommended, deferred or not
    assert [d.event.event_id for d in worker.deferred] == ["e3", "e4"]  # e4 waits behind e3 (same session)
    await worker.checkpoint.commit()
    assert broker.forwarded == [] and broker.acked == []  # held: deferred tallies go first

    store.down = False
    with caplog.at_level(logging.INFO, logger="stream.worker"):
        await worker.fold_deferred()  # the timer's
    assert "folded 2 deferred events: the online store is readable again" in caplog.text
    assert worker.deferred == []
    await worker.checkpoint.commit()
    assert broker.forwarded == [(0, 1), (0, 2), (0, 3), (0, 4)]  # partition order, whatever the folding order
    assert sorted(broker.acked) == ["p0@1", "p0@2", "p0@3", "p0@4"]


async def test_at_most_50_batches_are_deferred_then_batches_wait_for_the_store(tmp_path):
    worker, broker, store = make_worker(tmp_path, batch_size=2)
    assert worker.max_deferred == 2 * MAX_DEFERRED_BATCHES == 100
    store.down = True
    for b in range(MAX_DEFERRED_BATCHES):
        await worker.handle(new_sessions(2 * b, 2))
    assert len(worker.deferred) == 100
    assert REGISTRY.get_sample_value("reco_events_deferred_waiting") == 100

    retries = REGISTRY.get_sample_value("reco_batch_retries_total", {"error": "ConnectionError"}) or 0.0
    beyond = asyncio.create_task(worker.handle(new_sessions(100, 2)))
    await asyncio.sleep(0.5)
    assert not beyond.done(), "a batch beyond the cap was deferred instead of waiting for the store"
    assert len(worker.deferred) == 100
    assert (REGISTRY.get_sample_value("reco_batch_retries_total", {"error": "ConnectionError"}) or 0.0) > retries

    store.down = False
    await asyncio.wait_for(beyond, 10)
    await worker.fold_deferred()
    await drain(worker)
    await worker.checkpoint.commit()
    assert len(broker.published) == 102 and len(set(broker.published)) == 102
    assert broker.forwarded == [(0, n) for n in range(102)]
    assert sorted(broker.acked) == sorted(f"p0@{n}" for n in range(102))


@pytest.mark.parametrize("raw", [b"", b"not json"])
async def test_a_batch_of_dead_letters_only_is_acknowledged(tmp_path, raw):
    worker, broker, _ = make_worker(tmp_path)
    await worker.handle([RawMessage(raw, "events", 0, 7, origin="p0@7")])
    await drain(worker)
    await worker.checkpoint.commit()
    assert broker.dead == [7] and broker.acked == ["p0@7"] and broker.forwarded == []


async def test_a_valid_event_is_acknowledged_once(tmp_path):
    worker, broker, _ = make_worker(tmp_path)
    await worker.handle([RawMessage(json.dumps(event(1)).encode(), "events", 0, 0, origin="p0@0")])
    await drain(worker)
    await worker.checkpoint.commit()
    await worker.checkpoint.commit()
    assert broker.acked == ["p0@0"]
