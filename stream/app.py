"""Faust worker: consumes events, runs each batch through the pipeline, publishes recommendations
and dead letters. An event is acknowledged only after the broker has acknowledged every record of
its batch and the state it changed is written to Feast (at-least-once, stream/writeback.py); the
state update is idempotent for redelivered events.

Run: ``python -m stream.app worker -l info``
"""
from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from functools import partial
from typing import Any, Awaitable, Callable, TypeVar

import faust
import mode.loop
from aiokafka import AIOKafkaConsumer
from prometheus_client import start_http_server
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry, stop_after_delay, wait_exponential

from contract.messages import Erasure, Tally
from contract.settings import Settings, get_settings
from features.cache import STORE_ERRORS, StateCache
from features.store import OnlineFeatures
from serving.online.client import TritonRanker
from stream import metrics
from stream.counters import Counters, Kind, TallyOutbox, item_key, route, user_key
from stream.metrics import timed
from stream.pipeline import Folded, Pipeline, RawMessage
from stream.writeback import WriteBehind

log = logging.getLogger(__name__)
settings = get_settings()
if not settings.pseudonym_key.get_secret_value():
    raise SystemExit("RECO_PSEUDONYM_KEY is not set: `make setup` writes one to .stack/secrets.env, "
                     "and deploy/up.sh passes it to the worker")
T = TypeVar("T")
R = TypeVar("R")



def broker_credentials(settings: Settings) -> faust.SASLCredentials | None:
    """The `worker` Kafka login (deploy/kafka_access.py says what it may do), in Faust's type."""
    login = settings.kafka_client_options("worker")
    if "sasl_mechanism" not in login:  # PLAINTEXT
        return None
    return faust.SASLCredentials(username=login["sasl_plain_username"], password=login["sasl_plain_password"],
                                 ssl_context=login["ssl_context"], mechanism=login["sasl_mechanism"])


(settings.run_dir / "faust").mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
app = faust.App(
    settings.consumer_group,
    broker=f"kafka://{settings.bootstrap_servers}",
    broker_credentials=broker_credentials(settings),
    web_host=settings.bind_host,
    web_bind=settings.bind_host,  # Faust listens on 0.0.0.0 unless told
    web_port=settings.worker_web_port,
    topic_partitions=settings.topic_partitions,
    consumer_auto_offset_reset="earliest",
    consumer_group_instance_id=settings.worker_instance_id,
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=settings.session_timeout_s / 4,
    broker_commit_interval=settings.commit_interval_s,
    producer_linger=settings.producer_linger_s,
    datadir=str(settings.run_dir / "faust" / settings.worker_instance_id),  # one per worker process
    producer_max_request_size=settings.max_dlq_record_bytes,
    consumer_max_fetch_size=settings.max_message_bytes,
)


def raw_topic(name: str) -> faust.TopicT:
    """Bytes in and out: the contract (contract/messages.py) parses and serialises, not Faust."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     allow_empty=True)


events_topic = raw_topic(settings.events_topic)
recommendations_topic = raw_topic(settings.recommendations_topic)
dlq_topic = raw_topic(settings.dlq_topic)
# Created with the others by deploy/create_topics.py (the Helm chart: KafkaTopic), with the
# partitions of `events`: tallies are routed by partition number.
item_tally_topic = raw_topic(settings.item_tally_topic)
user_tally_topic = raw_topic(settings.user_tally_topic)


@retry(stop=stop_after_delay(60), wait=wait_exponential(max=5), reraise=True)
def connect_features() -> OnlineFeatures:
    features = OnlineFeatures(settings)
    features.apply()
    return features


_writebacks: dict[str, WriteBehind] = {}  # each running agent's, for the flush and erasure tasks
_sessions: list[SessionsAgent] = []  # the running sessions agent, for the timer that folds deferred events
# Events deferred while the online store is down, at most: beyond, batches wait for the store again
# (memory stays bounded through a long outage).
MAX_DEFERRED = settings.batch_size * 50


class SessionsAgent:
    """The events agent's state: batches in flight, and the events deferred while the online store
    could not be read (Pipeline.fold with degrade). Those got a provisional recommendation; they
    are folded, forwarded to the counters and acknowledged, in their order, once it can be read
    again, and later events of their sessions wait behind them."""

    def __init__(self, pipeline: Pipeline, writeback: WriteBehind):
        self.pipeline, self.writeback = pipeline, writeback
        self.in_flight: deque[asyncio.Task] = deque()
        self.deferred: list[tuple[Any, RawMessage, str]] = []  # (Faust event, message, session id)
        self.lock = asyncio.Lock()  # folds run one at a time, in partition order
        self.outbox = TallyOutbox()
        # The flush timer and a rebalance may both forward: one at a time, or a later take's
        # tallies could reach a partition before an earlier one's.
        self.forwarding = asyncio.Lock()

    async def handle(self, batch: list) -> None:
        messages = [RawMessage(e.message.value or b"", e.message.topic, e.message.partition, e.message.offset)
                    for e in batch]
        async with self.lock:
            await self.fold_deferred()
            waiting = {session for _, _, session in self.deferred}
            fold = partial(self.pipeline.fold, degrade=len(self.deferred) < MAX_DEFERRED, waiting=waiting)
            folded = await until_done(fold, messages)
            deferred = set(folded.deferred)
            by_source = {(m.partition, m.offset): (e, m) for e, m in zip(batch, messages)}
            self.deferred += [(*by_source[source], event.session_id)
                              for event, source in zip(folded.events, folded.sources) if source in deferred]
            metrics.EVENTS_DEFERRED_WAITING.set(len(self.deferred))
            done = [e for e, m in zip(batch, messages) if (m.partition, m.offset) not in deferred]
            self.start(recommend_and_publish(self.pipeline, folded, done, self.previous(), self.outbox))
        # Triton ranks one batch while the worker folds the next; a bug in a task stops the agent.
        while self.in_flight and (len(self.in_flight) >= settings.batches_in_flight or self.in_flight[0].done()):
            await self.in_flight.popleft()

    async def fold_deferred(self) -> None:
        """One try at folding the deferred events (under the lock): on success their tallies join the
        outbox and they are acknowledged once those are sent and the state written; their
        provisional recommendations stand."""
        if not self.deferred:
            return
        try:
            folded = await self.pipeline.fold([m for _, m, _ in self.deferred])
        except Exception as exc:  # any failing dependency, as until_done retries: they stay deferred
            if not isinstance(exc, STORE_ERRORS):
                log.warning("folding %d deferred events failed, trying again later: %r", len(self.deferred), exc)
            return  # the next batch or the timer tries again
        events, self.deferred = [e for e, _, _ in self.deferred], []
        metrics.EVENTS_DEFERRED_WAITING.set(0)
        log.info("folded %d deferred events: the online store is readable again", len(events))
        self.outbox.add(folded.tallies, events)

    async def forward_tallies(self) -> None:
        """Sends the outbox's tallies to the counters' owners, then hands their events to the
        write-behind. Not while events are deferred: their tallies go first (TallyOutbox.take)."""
        async with self.forwarding:
            if self.deferred or not self.outbox.events:
                return
            tallies, events = self.outbox.take()
            try:
                await publish_tallies(tallies)
            except Exception as exc:  # the broker: the next flush sends them (a counter skips repeats)
                self.outbox.put_back(tallies, events)
                log.warning("forwarding %d tallies failed, trying at the next flush: %r", len(tallies), exc)
                return
            self.writeback.published(events)

    def previous(self) -> asyncio.Task | None:
        return self.in_flight[-1] if self.in_flight else None

    def start(self, work: Awaitable[None]) -> None:
        self.in_flight.append(asyncio.ensure_future(work))


@app.agent(events_topic)
async def recommend(stream):
    try:
        cache = StateCache(connect_features(), settings.state_max_entries, settings.state_idle_s)
        # Its own Feast client, so writes run beside reads; connect_features has registered the views.
        writeback = WriteBehind(cache, OnlineFeatures(settings), stream.ack)
        _writebacks["sessions"] = writeback
        agent = SessionsAgent(Pipeline(settings, cache, make_ranker()), writeback)
        _sessions.append(agent)
        freeze_startup_objects()
        # noack_take, not take_events: take_events acks a batch in a `finally` when the loop body
        # raises, so a batch that failed on Redis or Kafka would be committed unprocessed.
        async for batch in stream.noack_take(settings.batch_size, within=settings.batch_wait_s):
            await agent.handle(batch)
    except Exception:
        metrics.AGENT_CRASHES.inc()
        raise


def freeze_startup_objects() -> None:
    """Takes what start-up built (about 390,000 objects: Faust, Feast and its registry, pandas, gRPC)
    out of the cycle collector's view. Each full collection scanned them all, stopping every
    thread of the worker for 200-250 ms, a few times a minute at 200 events/s: that was the p99.
    Now one takes about 10 ms. Collected first, so no garbage is kept forever."""
    gc.collect()
    gc.freeze()


@app.timer(interval=1.0)
async def fold_deferred_events():
    """Deferred events are folded when the store is back even if no new event arrives."""
    for agent in list(_sessions):
        async with agent.lock:
            await agent.fold_deferred()


@app.agent(item_tally_topic)
async def count_items(stream):
    await count(stream, "item")


@app.agent(user_tally_topic)
async def count_users(stream):
    await count(stream, "user")


async def count(stream, kind: Kind) -> None:
    """Owns the counters of the items (users) on this worker's partitions of the tallies topic;
    a tally is acknowledged once the counters it changed are written to Feast."""
    try:
        cache = StateCache(connect_features(), settings.state_max_entries, settings.state_idle_s)
        writeback = WriteBehind(cache, OnlineFeatures(settings), stream.ack)
        _writebacks[kind] = writeback
        counters = Counters(cache, kind)
        async for batch in stream.noack_take(settings.batch_size * 4, within=settings.batch_wait_s):
            await until_done(counters.count, [e.message.value or b"" for e in batch])
            writeback.published(batch)
    except Exception:
        metrics.AGENT_CRASHES.inc()
        raise


@app.task
async def follow_erasures():
    """Every worker reads every erasure request (no consumer group: each reads all of the
    control topic from its end) and forgets those sessions and users."""
    consumer = AIOKafkaConsumer(settings.control_topic, **settings.kafka_client_options("worker"),
                                group_id=None, auto_offset_reset="latest", enable_auto_commit=False)
    await until_done(lambda _: consumer.start(), None)
    try:
        async for message in consumer:
            try:
                erasure = Erasure.model_validate_json(message.value or b"")
            except ValidationError as exc:
                log.error("ignoring an invalid control message at offset %d: %s", message.offset, exc)
                continue
            for agent in list(_sessions):
                agent.outbox.forget_users(erasure.user_ids)
            deleted = {name: await until_done(partial(writeback.erase, erasure.session_ids), erasure.user_ids)
                       for name, writeback in list(_writebacks.items())}  # each agent's memory, then its rows
            metrics.ERASURES.inc()
            log.info("erased %d sessions and %d users requested at %d: %s", len(erasure.session_ids),
                     len(erasure.user_ids), erasure.requested_at, deleted)
    finally:
        await consumer.stop()


@app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust types a coroutine receiver too narrowly
async def write_and_forget(app: Any, *revoked: Any, signal: Any, **kwargs: Any) -> None:
    """Revoked partitions may go to another worker, which then changes their sessions and
    counters: write what this worker changed and forget the rest, so state held from before is
    never used again if they come back."""
    metrics.CONSUMER_LAG.clear()  # partitions this worker may no longer hold; record_lag sets the rest again
    for writeback in await forward_and_write():
        log.info("rebalance: %d entries forgotten", writeback.cache.forget_clean())


async def forward_and_write() -> list[WriteBehind]:
    """The outboxes' tallies first, so their events are acknowledged by this same write; then
    every agent's state to Feast. Returns the write-behinds, for what follows a write."""
    for agent in list(_sessions):
        await agent.forward_tallies()
    writebacks = list(_writebacks.values())
    for writeback in writebacks:
        await writeback.flush()
    return writebacks


@app.timer(interval=60.0)
async def purge_expired_rows():
    """Redis expires rows itself; the embedded SQLite store needs them deleted."""
    for writeback in list(_writebacks.values())[:1]:  # one purge deletes every view's old rows
        await writeback.purge_expired()


@app.timer(interval=settings.feature_flush_s)
async def flush_features():
    """Bounds how stale Feast is behind the worker (reco_feature_freshness_seconds): sessions at
    this flush, item and user counters at the counters' next one."""
    for writeback in await forward_and_write():
        writeback.cache.evict()


def count_retry(state) -> None:
    exc = state.outcome.exception()
    metrics.BATCH_RETRIES.labels(type(exc).__name__).inc()
    log.warning("batch failed (attempt %d), retrying in %.1fs: %r", state.attempt_number,
                state.next_action.sleep, exc)


async def until_done(step: Callable[[T], Awaitable[R]], arg: T) -> R:
    """Runs a step until it succeeds, retrying a failed dependency (Feast, Redis, Kafka) with
    backoff. Message content cannot fail a step (it becomes a dead letter), so a retry waits for a
    dependency, and the partition waits with it."""
    async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.1, max=5), before_sleep=count_retry):
        with attempt:
            return await step(arg)
    raise AssertionError("unreachable: AsyncRetrying retries until the step succeeds")


async def recommend_and_publish(pipeline: Pipeline, folded: Folded, batch: list, previous: asyncio.Task | None,
                                outbox: TallyOutbox) -> None:
    """``batch``: the Faust events to acknowledge once their tallies are sent and the state
    written (the deferred ones are not)."""
    result = await until_done(pipeline.recommend, folded)
    if previous is not None:  # a session's recommendations are published in the order of its events
        await asyncio.wait([previous])
    with timed("publish"):
        await until_done(publish, result)
    with timed("learn"):
        pipeline.learn(folded, result)
    outbox.add(result.tallies, batch)


async def publish(result) -> None:
    """Sends the dead letters and recommendations and waits for the broker's acknowledgement of each."""
    pending = [await dlq_topic.send(key=f"{letter.partition}:{letter.offset}".encode(),
                                    value=letter.model_dump_json().encode())
               for letter in result.dead_letters]
    pending += [await recommendations_topic.send(key=rec.session_id.encode(), value=rec.model_dump_json().encode())
                for rec in result.recommendations]
    await asyncio.gather(*pending)
    published_s = time.time()
    metrics.RECOMMENDATIONS_PUBLISHED.inc(len(result.recommendations))
    for ts in result.event_ts:
        metrics.END_TO_END_LATENCY.observe(max(0.0, published_s - ts / 1000))


async def publish_tallies(tallies: list[Tally]) -> None:
    """To the counters' owners: one message per partition of each tallies topic."""
    pending = [await topic.send(value=value, partition=partition)
               for topic, key in ((item_tally_topic, item_key), (user_tally_topic, user_key))
               for partition, value in route(tallies, key, settings.topic_partitions).items()]
    await asyncio.gather(*pending)


def make_ranker() -> TritonRanker:
    return TritonRanker(settings.triton_grpc_urls, settings.model_name, settings.triton_timeout_s,
                        settings.max_session_len, settings.triton_cooldown_s)


@app.task
async def expose_metrics():
    metrics.initialise_labels()
    start_http_server(settings.metrics_port, addr=settings.bind_host)


_probe: list[TritonRanker] = []


@app.timer(interval=5.0)
async def probe_triton():
    """Keeps reco_triton_up true to Triton's readiness even while no events arrive."""
    if not _probe:
        _probe.append(make_ranker())
    try:
        metrics.TRITON_UP.set(int(await _probe[0].ready()))
    except Exception:  # unreachable server: the gauge says so, the alert fires
        metrics.TRITON_UP.set(0)


@app.timer(interval=5.0)
async def record_lag():
    consumer = app.consumer
    for tp in consumer.assignment():
        position, highwater = await consumer.position(tp), consumer.highwater(tp)
        if position is not None and highwater is not None:  # None until a new partition's first fetch
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))


if __name__ == "__main__":
    # uvloop, as `faust -L uvloop` would choose: about 10% less worker CPU per event than asyncio's
    # own loop at 200 events/s here (docs/benchmarks.md), so the Dockerfile and Helm get it too.
    mode.loop.use("uvloop")
    app.main()
