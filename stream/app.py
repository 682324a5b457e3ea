"""Faust wiring of the worker: the app, its topics, and agents and timers that hand their work to
stream/worker.py:Worker (the events) and stream/checkpoint.py:Checkpoint (tallies forwarded, state
written, then events acknowledged). Importing this module does nothing: :func:`create_app` reads
the settings and builds the app (``stream.app.app`` builds it on first use, for ``faust -A``).

Run: ``python -m stream.app worker -l info``, or under stream/supervisor.py (what deploy/ runs),
which brings a dead worker back in seconds.
"""
from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any, Mapping

import faust
import mode.loop
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import start_http_server
from pydantic import ValidationError
from tenacity import retry, stop_after_delay, wait_exponential

from contract.messages import Erasure
from contract.settings import DURABLE_PRODUCER, Settings, get_settings
from features.cache import StateCache
from features.privacy import require_key
from features.store import OnlineFeatures
from serving.online.client import TritonRanker
from stream import metrics
from stream.checkpoint import SESSIONS, Checkpoint
from stream.counters import Counters, Kind
from stream.pipeline import BatchResult, Pipeline, RawMessage
from stream.retry import until_done
from stream.worker import Worker

log = logging.getLogger(__name__)
METADATA_MAX_AGE_MS = 10_000  # how soon the worker's Kafka clients learn of a broker that came back


class DurableProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, idempotent as every producer of the project (DURABLE_PRODUCER):
    Faust turns idempotence on only inside its transactions, which the worker does not use."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), **DURABLE_PRODUCER}


class Transport(faust_aiokafka.Transport):
    Producer = DurableProducer


def broker_credentials(settings: Settings) -> faust.SASLCredentials | None:
    """The `worker` Kafka login (deploy/kafka_access.py says what it may do), in Faust's type."""
    login = settings.kafka_client_options("worker")
    if "sasl_mechanism" not in login:  # PLAINTEXT
        return None
    return faust.SASLCredentials(username=login["sasl_plain_username"], password=login["sasl_plain_password"],
                                 ssl_context=login["ssl_context"], mechanism=login["sasl_mechanism"])


@retry(stop=stop_after_delay(60), wait=wait_exponential(max=5), reraise=True)
def connect_features(settings: Settings) -> OnlineFeatures:
    features = OnlineFeatures(settings)
    features.apply()
    return features


def state_cache(settings: Settings) -> StateCache:
    return StateCache(connect_features(settings), settings.state_max_entries, settings.state_idle_s)


def make_ranker(settings: Settings) -> TritonRanker:
    return TritonRanker(settings.triton_grpc_urls, settings.model_name, settings.triton_timeout_s,
                        settings.max_session_len, settings.triton_cooldown_s)


def freeze_startup_objects() -> None:
    """Takes what start-up built (Faust, Feast and its registry, pandas, gRPC) out of the cycle
    collector's view: each full collection scanned them all, stopping every thread of the worker
    (docs/benchmarks.md has the figures). Collected first, so no garbage is kept forever."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or get_settings()
    require_key(settings.pseudonym_key.get_secret_value())  # refuses an empty key
    (settings.run_dir / "faust").mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        settings.consumer_group,
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        broker_credentials=broker_credentials(settings),
        web_host=settings.bind_host,
        web_bind=settings.bind_host,  # Faust listens on 0.0.0.0 unless told
        web_port=settings.worker_web_port,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,  # Faust's own topics (the assignor's)
        producer_acks=-1,  # all in-sync replicas
        # aiokafka forgets the bootstrap list once it knows the cluster and asks only the brokers
        # it knows: after every broker restarted, it may know just the first one back, and were
        # that one killed before its 5-minute refresh, the worker would stall until it returned.
        consumer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
        producer_metadata_max_age_ms=METADATA_MAX_AGE_MS,
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
    app.transport = Transport(app.conf.broker_consumer, app)

    def raw_topic(name: str) -> faust.TopicT:
        """Bytes in and out: the contract (contract/messages.py) parses and serialises, not Faust."""
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                         allow_empty=True)

    events_topic = raw_topic(settings.events_topic)
    recommendations_topic = raw_topic(settings.recommendations_topic)
    dlq_topic = raw_topic(settings.dlq_topic)
    # Created with the others by deploy/create_topics.py (the Helm chart: KafkaTopic), with the
    # partitions of `events`: tallies are routed by partition number.
    tally_topics: dict[Kind, faust.TopicT] = {"item": raw_topic(settings.item_tally_topic),
                                              "user": raw_topic(settings.user_tally_topic)}

    async def publish(result: BatchResult) -> None:
        """Sends the dead letters and recommendations and waits for the broker's acknowledgement of each."""
        pending = [await dlq_topic.send(key=f"{letter.partition}:{letter.offset}".encode(),
                                        value=letter.model_dump_json().encode())
                   for letter in result.dead_letters]
        pending += [await recommendations_topic.send(key=rec.session_id.encode(),
                                                     value=rec.model_dump_json().encode())
                    for rec in result.recommendations]
        await asyncio.gather(*pending)

    async def send_tallies(routed: dict[Kind, dict[int, bytes]]) -> None:
        """To the counters' owners: one message per partition of each tallies topic."""
        pending = [await tally_topics[kind].send(value=value, partition=partition)
                   for kind, messages in routed.items() for partition, value in messages.items()]
        await asyncio.gather(*pending)

    checkpoint = Checkpoint(send_tallies, settings.topic_partitions)
    workers: list[Worker] = []  # the running events agent's, for the timer that folds deferred events

    @app.agent(events_topic, name="stream.app.recommend")
    async def recommend(stream: Any) -> None:
        try:
            cache = state_cache(settings)
            # Its own Feast client, so writes run beside reads; connect_features has registered the views.
            checkpoint.track(SESSIONS, cache, OnlineFeatures(settings), stream.ack)
            worker = Worker(settings, Pipeline(settings, cache, make_ranker(settings)), checkpoint, publish)
            workers.append(worker)
            freeze_startup_objects()
            # noack_take, not take_events: take_events acks a batch in a `finally` when the loop body
            # raises, so a batch that failed on Redis or Kafka would be committed unprocessed.
            async for batch in stream.noack_take(settings.batch_size, within=settings.batch_wait_s):
                await worker.handle([RawMessage(e.message.value or b"", e.message.topic, e.message.partition,
                                                e.message.offset, origin=e) for e in batch])
        except Exception:
            metrics.AGENT_CRASHES.inc()
            raise

    async def count(stream: Any, kind: Kind) -> None:
        """Owns the counters of the items (users) on this worker's partitions of the tallies topic;
        a tally is acknowledged once the counters it changed are written to Feast."""
        try:
            cache = state_cache(settings)
            checkpoint.track(kind, cache, OnlineFeatures(settings), stream.ack)
            counters = Counters(cache, kind)
            async for batch in stream.noack_take(settings.batch_size * 4, within=settings.batch_wait_s):
                await until_done(counters.count, [e.message.value or b"" for e in batch])
                checkpoint.counted(kind, batch)
        except Exception:
            metrics.AGENT_CRASHES.inc()
            raise

    @app.agent(tally_topics["item"], name="stream.app.count_items")
    async def count_items(stream: Any) -> None:
        await count(stream, "item")

    @app.agent(tally_topics["user"], name="stream.app.count_users")
    async def count_users(stream: Any) -> None:
        await count(stream, "user")

    @app.timer(interval=1.0)
    async def fold_deferred_events() -> None:
        """Deferred events are folded when the store is back even if no new event arrives."""
        for worker in list(workers):
            await worker.fold_deferred()

    @app.timer(interval=settings.feature_flush_s)
    async def flush_features() -> None:
        """Bounds how stale Feast is behind the worker (reco_feature_freshness_seconds): sessions at
        this commit, item and user counters at the counters' next one."""
        await checkpoint.commit()
        checkpoint.evict()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust types a coroutine receiver too narrowly
    async def write_and_forget(app: Any, *revoked: Any, signal: Any, **kwargs: Any) -> None:
        metrics.CONSUMER_LAG.clear()  # partitions this worker may no longer hold; record_lag sets the rest again
        await checkpoint.on_revoke()

    @app.timer(interval=60.0)
    async def purge_expired_rows() -> None:
        """Redis expires rows itself; the embedded SQLite store needs them deleted."""
        await checkpoint.purge_expired()

    @app.task
    async def follow_erasures() -> None:
        """Every worker reads every erasure request (no consumer group: each reads all of the
        control topic from its end) and forgets those sessions and users."""
        consumer = AIOKafkaConsumer(settings.control_topic, **settings.kafka_client_options("worker"),
                                    group_id=None, auto_offset_reset="latest", enable_auto_commit=False,
                                    metadata_max_age_ms=METADATA_MAX_AGE_MS)
        await until_done(lambda _: consumer.start(), None)
        try:
            async for message in consumer:
                try:
                    erasure = Erasure.model_validate_json(message.value or b"")
                except ValidationError as exc:
                    log.error("ignoring an invalid control message at offset %d: %s", message.offset, exc)
                    continue
                deleted = await checkpoint.forget(erasure.session_ids, erasure.user_ids)
                metrics.ERASURES.inc()
                log.info("erased %d sessions and %d users requested at %d: %s", len(erasure.session_ids),
                         len(erasure.user_ids), erasure.requested_at, deleted)
        finally:
            await consumer.stop()

    @app.task
    async def expose_metrics() -> None:
        metrics.initialise_labels()
        start_http_server(settings.metrics_port, addr=settings.bind_host)

    probe: list[TritonRanker] = []  # made in the timer, on the worker's loop

    @app.timer(interval=5.0)
    async def probe_triton() -> None:
        """Keeps reco_triton_up true to Triton's readiness even while no events arrive."""
        if not probe:
            probe.append(make_ranker(settings))
        try:
            metrics.TRITON_UP.set(int(await probe[0].ready()))
        except Exception:  # unreachable server: the gauge says so, the alert fires
            metrics.TRITON_UP.set(0)

    @app.timer(interval=5.0)
    async def record_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            position, highwater = await consumer.position(tp), consumer.highwater(tp)
            if position is not None and highwater is not None:  # None until a new partition's first fetch
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))

    return app


def __getattr__(name: str) -> Any:
    """``stream.app.app``: built on first use (``faust -A stream.app``), not at import."""
    if name == "app":
        globals()["app"] = built = create_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_worker() -> None:
    """The Faust worker, with the command line's arguments (``worker -l info``)."""
    worker_app = create_app()
    # uvloop, as `faust -L uvloop` would choose: less worker CPU per event than asyncio's own loop
    # (docs/benchmarks.md), so the Dockerfile and Helm get it too.
    mode.loop.use("uvloop")
    worker_app.main()


if __name__ == "__main__":
    run_worker()
