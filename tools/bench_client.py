"""An outside client for `make bench`: it knows only the documented message schemas (README,
Messages) and Kafka. It sends events at a fixed rate, reads the recommendations back and times
each one on its own clock (receive time minus send time); it counts lost and duplicated ones, and
samples the worker group's consumer lag and the CPU time of the stack's processes meanwhile.

    .venv/bin/python -m tools.bench_client --rate 200 --seconds 30      # one JSON line
    .venv/bin/python -m tools.bench_client --echo --rate 200 --seconds 10  # Kafka's own round trip

``--client confluent`` uses confluent-kafka (librdkafka: C, TLS in OpenSSL) instead of kafka-python
(pure Python, about 0.4 of a core at 200 events/s), so the client takes little of the CPU it
measures; same CLI, same JSON (``cpu_s.client`` counts librdkafka's threads too: they are this
process's). ``--rate 0`` sends as fast as the producer can (a burst). ``--echo`` times a
produce-to-consume round trip on a scratch topic instead: the transport floor under the product's
latency. SIGUSR1 ends the sending early (what was sent is still read back and counted).
It connects as README's Access section tells a client to: SASL_SSL, SCRAM-SHA-512, the stack's CA,
as the `admin` user (it produces, consumes and reads the group's lag) with the password from
RECO_KAFKA_ADMIN_PASSWORD or .stack/secrets.env.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable, NamedTuple

EVENT_TYPES = ["view", "view", "view", "click", "add_to_cart", "purchase"]  # a browsing-heavy mix
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def cpu_seconds(pid_dir: Path) -> dict[str, float]:
    """utime + stime of each service's whole process group (Triton's python stubs included)."""
    out: dict[str, float] = {}
    if not pid_dir.is_dir():
        return out
    for pid_file in pid_dir.glob("*.pid"):
        if pid_file.stem.endswith(".process"):  # a worker's process: in its supervisor's group, counted there
            continue
        try:
            group = int(pid_file.read_text())
        except ValueError:
            continue
        total = 0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:  # field 5: process group id
                total += int(fields[11]) + int(fields[12])
        out[pid_file.stem] = total / CLK_TCK
    times = os.times()  # this client too: it shares the machine with the services it measures
    out["client"] = times.user + times.system
    return out


def connection(args: argparse.Namespace) -> dict:
    """Keyword arguments for every kafka-python client this one makes. Reconnects back off up to
    1 s, as Java clients do (kafka-python's default, 30 s, made this client the slowest part of a
    broker restart)."""
    base = {"bootstrap_servers": args.bootstrap, "reconnect_backoff_max_ms": 1000}
    if args.security_protocol == "PLAINTEXT":
        return base
    name = f"RECO_KAFKA_{args.user.upper()}_PASSWORD"
    password = os.environ.get(name)
    if not password and args.secrets_file.is_file():
        lines = (line.partition("=") for line in args.secrets_file.read_text().splitlines())
        password = next((value for key, _, value in lines if key == name), None)
    if not password:
        raise SystemExit(f"{name} is not set and not in {args.secrets_file} (`make setup` writes it)")
    return {**base, "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": args.user, "sasl_plain_password": password, "ssl_cafile": str(args.ca_file)}


# librdkafka's names for the kafka-python options ``connection`` returns.
LIBRDKAFKA_NAMES = {"bootstrap_servers": "bootstrap.servers", "security_protocol": "security.protocol",
                    "sasl_mechanism": "sasl.mechanisms", "sasl_plain_username": "sasl.username",
                    "sasl_plain_password": "sasl.password", "ssl_cafile": "ssl.ca.location",
                    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms"}


def librdkafka_config(options: dict) -> dict:
    """``connection``'s kafka-python keyword arguments as a confluent-kafka (librdkafka) config:
    the same broker, SASL_SSL with SCRAM-SHA-512, user, password and CA file. An option it has no
    name for is refused rather than silently dropped (e.g. an ``ssl_context``: librdkafka takes
    a CA file)."""
    unknown = set(options) - set(LIBRDKAFKA_NAMES)
    if unknown:
        raise ValueError(f"no librdkafka equivalent for {sorted(unknown)}")
    config = {LIBRDKAFKA_NAMES[key]: value for key, value in options.items()}
    if isinstance(config.get("bootstrap.servers"), (list, tuple)):
        config["bootstrap.servers"] = ",".join(config["bootstrap.servers"])
    if "ssl.ca.location" in config:
        config["ssl.ca.location"] = str(config["ssl.ca.location"])
    return config


Record = tuple[bytes, int]  # (value, the record's timestamp in ms)


class KafkaPython:
    """kafka-python: pure Python, TLS included (about 0.4 of a core at 200 events/s both ways)."""

    def __init__(self, options: dict):
        self.options = options
        self._probe: Any = None  # made on first use

    def create_topic(self, name: str, partitions: int) -> None:
        """Replicated as the broker's default.replication.factor says (-1)."""
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(**self.options)
        try:
            admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=-1)])
        except TopicAlreadyExistsError:
            pass
        admin.close()

    def producer(self, linger_ms: int = 1) -> "Producer":
        from kafka import KafkaProducer

        producer = KafkaProducer(**self.options, acks="all", enable_idempotence=True, linger_ms=linger_ms)
        return Producer(lambda topic, key, value: producer.send(topic, key=key, value=value), producer.flush,
                        producer.close)

    def end_offsets(self, topic: str) -> dict[int, int]:
        from kafka import KafkaConsumer, TopicPartition

        if self._probe is None:  # one for every call (drain.py asks every 2 s)
            self._probe = KafkaConsumer(**self.options)
        partitions = [TopicPartition(topic, p) for p in self._probe.partitions_for_topic(topic) or []]
        return {tp.partition: offset for tp, offset in self._probe.end_offsets(partitions).items()}

    def reader(self, topic: str, offsets: dict[int, int] | None = None) -> "Reader":
        """Reads ``topic`` from ``offsets`` (partition -> offset), or from its end now."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(**self.options, enable_auto_commit=False,
                                 fetch_max_wait_ms=5, max_partition_fetch_bytes=10_000_000)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        if offsets is None:
            consumer.seek_to_end()
            for tp in partitions:
                consumer.position(tp)  # resolve the end now, before anything is sent
        else:
            for tp in partitions:
                consumer.seek(tp, offsets.get(tp.partition, 0))

        def poll(timeout_s: float) -> list[Record]:
            batch = consumer.poll(timeout_ms=int(timeout_s * 1000))
            return [(record.value, record.timestamp) for records in batch.values() for record in records]

        return Reader(poll, consumer.close)

    def lag(self, group: str, topic: str) -> "Callable[[], int]":
        """A function returning ``group``'s total lag on ``topic`` now."""
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        admin, probe = KafkaAdminClient(**self.options), KafkaConsumer(**self.options)
        partitions = [TopicPartition(topic, p) for p in probe.partitions_for_topic(topic) or []]

        def total() -> int:
            committed = admin.list_group_offsets(group)[group]
            ends = probe.end_offsets(partitions)
            return sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in partitions)

        return total


class Confluent:
    """confluent-kafka: librdkafka in C, TLS in OpenSSL; its threads' CPU is this process's too."""

    def __init__(self, options: dict):
        # Nagle off, as kafka-python (TCP_NODELAY) and the Java clients: librdkafka leaves it on.
        self.config = librdkafka_config(options) | {"socket.nagle.disable": True}
        self._probe: Any = None  # made on first use

    def create_topic(self, name: str, partitions: int) -> None:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient(self.config)  # held until the result is in: its handle serves the future
        future = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=-1)])[name]
        try:
            future.result(30)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def producer(self, linger_ms: int = 1) -> "Producer":
        from confluent_kafka import Producer as RdProducer

        # librdkafka connects (TLS, SASL) and fetches its idempotent producer id in the background:
        # events sent before that waited about 0.5 s (p99 420 ms on the echo round trip), a start-up
        # cost a site's long-lived producer does not pay per event. Wait for it, as kafka-python's
        # constructor does; its statistics say when the id is assigned.
        ready = threading.Event()

        def statistics(report: str) -> None:
            if not ready.is_set() and json.loads(report).get("eos", {}).get("idemp_state") == "Assigned":
                ready.set()

        producer = RdProducer({**self.config, "acks": "all", "enable.idempotence": True, "linger.ms": linger_ms,
                               "statistics.interval.ms": 100, "stats_cb": statistics})
        deadline = time.monotonic() + 30
        while not ready.is_set() and time.monotonic() < deadline:
            producer.poll(0.05)
        failed: list[str] = []

        def delivered(error, _message) -> None:
            if error is not None:
                failed.append(str(error))

        def send(topic: str, key: bytes, value: bytes) -> None:
            while True:
                try:
                    producer.produce(topic, key=key, value=value, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.05)
            producer.poll(0)

        def flush() -> None:
            left = producer.flush(60)
            if left or failed:
                raise RuntimeError(f"{left} events not delivered, {len(failed)} failed ({failed[:3]})")

        return Producer(send, flush, lambda: None)

    def _consumer(self, group: str | None = None):
        from confluent_kafka import Consumer

        # fetch.wait.max.ms only bounds an empty fetch: the broker answers as soon as a record
        # arrives. Librdkafka's default (500), not 5, which made the broker answer 200 times a second.
        return Consumer({**self.config, "group.id": group or f"bench-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False,
                         "max.partition.fetch.bytes": 10_000_000})

    @staticmethod
    def _partitions(consumer, topic: str) -> list[int]:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        if metadata.error is not None:
            raise RuntimeError(f"{topic}: {metadata.error}")
        return sorted(metadata.partitions)

    def end_offsets(self, topic: str) -> dict[int, int]:
        from confluent_kafka import Consumer, TopicPartition

        if self._probe is None:
            # One probe for every call (drain.py asks every 2 s). librdkafka insists on a group.id
            # and opens a coordinator connection for it, whose teardown at exit it logs as a SASL
            # error: the probe logs critical lines only (its failures raise here anyway).
            self._probe = Consumer({**self.config, "group.id": f"bench-probe-{uuid.uuid4().hex[:8]}",
                                    "enable.auto.commit": False, "log_level": 2})
        return {p: self._probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in self._partitions(self._probe, topic)}

    def reader(self, topic: str, offsets: dict[int, int] | None = None) -> "Reader":
        from confluent_kafka import TopicPartition

        consumer = self._consumer()
        start = offsets if offsets is not None else {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in self._partitions(consumer, topic)}
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in self._partitions(consumer, topic)])

        def poll(timeout_s: float) -> list[Record]:
            # consume(n, timeout) waits for all n or the timeout: wait for the first record only,
            # then take what is already here.
            first = consumer.poll(timeout_s)
            if first is None:
                return []
            messages = [first, *consumer.consume(num_messages=10_000, timeout=0)]
            return [(m.value(), m.timestamp()[1]) for m in messages if m.error() is None]

        return Reader(poll, consumer.close)

    def lag(self, group: str, topic: str) -> "Callable[[], int]":
        from confluent_kafka import TopicPartition

        # Only reads the group's committed offsets (OffsetFetch): it never joins the group.
        consumer = self._consumer(group)
        partitions = [TopicPartition(topic, p) for p in self._partitions(consumer, topic)]

        def total() -> int:
            committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=5)}
            ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in partitions}
            return sum(max(0, end - max(0, committed.get(p, 0))) for p, end in ends.items())

        return total


CLIENTS: dict[str, Any] = {"kafka": KafkaPython, "confluent": Confluent}


class Producer(NamedTuple):
    send: Callable[[str, bytes, bytes], object]
    flush: Callable[[], object]
    close: Callable[[], object]


class Reader(NamedTuple):
    poll: Callable[[float], list[Record]]
    close: Callable[[], object]


class LagSampler(threading.Thread):
    """Every second: the worker group's total lag on the events topic, with the time it was read."""

    def __init__(self, client, group: str, topic: str):
        super().__init__(daemon=True)
        self.total = client.lag(group, topic)
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                self.samples.append((round(time.time(), 3), self.total()))
            except Exception:  # a sample lost is not worth failing the run
                continue


def session_lengths(views_csv: Path) -> list[int]:
    """Views per session in a DIGINETICA views file (``session_id;...`` rows under a header): the
    lengths real shoppers' sessions have, to draw benchmark sessions from."""
    counts: Counter[str] = Counter()
    with views_csv.open() as rows:
        next(rows)
        for row in rows:
            counts[row.split(";", 1)[0]] += 1
    return sorted(counts.values())


class RealLengthSessions:
    """The session of event n, for events taken in order: ``sessions`` concurrent slots, round
    robin; each slot's session ends after a length drawn (seeded) from ``lengths``, and a new one
    takes its place. Without it every session lives as long as the run (``make_event``), so on a
    long run every event carries a ``max_len`` history: ten times the model work of a real one."""

    def __init__(self, tag: str, sessions: int, lengths: list[int], seed: int):
        self.tag, self.lengths, self.rng = tag, lengths, random.Random(seed)
        self.generation = [0] * sessions
        self.left = [self.rng.choice(lengths) for _ in range(sessions)]

    def __call__(self, n: int) -> str:
        slot = n % len(self.left)
        if self.left[slot] == 0:
            self.generation[slot] += 1
            self.left[slot] = self.rng.choice(self.lengths)
        self.left[slot] -= 1
        return f"{self.tag}-s{slot}-{self.generation[slot]}"


def make_event(tag: str, n: int, sessions: int, items: int, rng: random.Random, session_life: int = 0,
               item_prefix: str = "i", session_id: str | None = None) -> dict:
    """Event n of ``sessions`` concurrent sessions, round robin; with ``session_life``, each one
    ends after that many events and a new one takes its place (staggered, so new sessions start
    all the time); ``session_id`` (RealLengthSessions) names the session instead. The same ``rng``
    seed gives the same events (but their ``ts``)."""
    session = n % sessions
    name = session_id or f"{tag}-s{session}"
    if session_life and not session_id:
        name += f"-{(n // sessions + session) // session_life}"
    return {"event_id": f"{tag}-{n}", "event_type": rng.choice(EVENT_TYPES),
            "session_id": name, "user_id": f"{tag}-u{session % 50}",
            "item_id": f"{item_prefix}{rng.randint(1, items)}", "ts": int(time.time() * 1000), "price": 9.99,
            "category_id": f"c{rng.randint(0, 39)}"}


def run(args: argparse.Namespace) -> dict:
    tag = args.tag or f"bench{uuid.uuid4().hex[:8]}"
    item_prefix = f"{tag}-i" if args.own_items else "i"
    client = CLIENTS[args.client](connection(args))
    out_topic = args.echo_topic if args.echo else args.recommendations_topic
    in_topic = args.echo_topic if args.echo else args.events_topic
    if args.echo:
        client.create_topic(args.echo_topic, 4)
    consumer = client.reader(out_topic)  # from the end now, before anything is sent

    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    produced: list[float] = []
    duplicate_times: list[float] = []
    fallbacks = 0
    fallback_reasons: Counter[str] = Counter()
    fallback_times: list[float] = []
    total = int(args.rate * args.seconds) if args.rate > 0 else args.events
    done_sending = threading.Event()
    stop_sending = threading.Event()  # SIGUSR1: send no more, read back what was sent (deploy/faults.py)
    signal.signal(signal.SIGUSR1, lambda *_: stop_sending.set())

    names = real_length_sessions(args, tag)

    def produce() -> None:
        producer = client.producer(linger_ms=1)
        rng = random.Random(args.seed)
        start = time.perf_counter()
        for n in range(total):
            if stop_sending.is_set():
                break
            if args.rate > 0:
                delay = start + n / args.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            event = make_event(tag, n, args.sessions, args.items, rng, args.session_life, item_prefix,
                               names(n) if names else None)
            value = json.dumps(event).encode()
            sent[event["event_id"]] = time.time()
            producer.send(in_topic, event["session_id"].encode(), value)
        producer.flush()
        producer.close()
        done_sending.set()

    lag = None if args.echo else LagSampler(client, args.group, args.events_topic)
    cpu_before = cpu_seconds(args.pid_dir)
    if lag:
        lag.start()
    sender = threading.Thread(target=produce, daemon=True)
    t0 = time.time()
    sender.start()
    idle_since = None
    while len(received) < (len(sent) if done_sending.is_set() else total):
        records = consumer.poll(0.1)
        now = time.time()
        got = False
        for value, timestamp_ms in records:
            payload = json.loads(value)
            event_id = payload.get("event_id")
            if not (isinstance(event_id, str) and event_id.startswith(tag)):
                continue
            got = True
            if event_id in received:
                duplicate_times.append(now)
                continue
            received[event_id] = now
            produced.append(timestamp_ms / 1000)  # when the worker's producer made it
            if payload.get("fallback") is not None:
                fallbacks += 1
                fallback_reasons[payload["fallback"]] += 1
                fallback_times.append(now)
        if got or not done_sending.is_set():
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since > args.idle_timeout:
            break
    sender.join()
    if lag:
        lag.stop.set()
        lag.join()
    cpu_after = cpu_seconds(args.pid_dir)
    consumer.close()

    latencies = sorted(1000 * (received[e] - sent[e]) for e in received if e in sent)
    span = max(received.values(), default=t0) - t0
    arrivals = sorted(received.values())
    return {
        "mode": "echo" if args.echo else "recommendations", "client": args.client, "sessions": sessions_shape(args),
        "offered_per_s": args.rate if args.rate > 0 else "burst",
        "sent": len(sent), "received": len(received), "lost": len(sent) - len(received),
        "duplicated": len(duplicate_times),
        "fallbacks": fallbacks, "fallback_reasons": dict(fallback_reasons),
        "achieved_per_s": round(len(received) / span, 1) if span > 0 else None,
        "p50_ms": percentile(latencies, 0.50), "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99), "max_ms": latencies[-1] if latencies else None,
        "lag_max": max(n for _, n in lag.samples) if lag and lag.samples else None,
        "lag_last": lag.samples[-1][1] if lag and lag.samples else None,
        "lag_samples": lag.samples if lag else None,
        "cpu_s": {k: round(cpu_after.get(k, 0) - v, 2) for k, v in cpu_before.items()},
        "last_fallback_at": max(fallback_times, default=None),
        "max_gap_s": round(max((b - a for a, b in zip(arrivals, arrivals[1:])), default=0.0), 2),
        "wall_s": round(time.time() - t0, 1),
        **({"arrivals": [round(t, 3) for t in arrivals],  # for deploy/faults.py and deploy/soak.py
            "produced": [round(t, 3) for t in sorted(produced)],
            "duplicate_arrivals": [round(t, 3) for t in duplicate_times]} if args.arrivals else {}),
    }


def sessions_shape(args: argparse.Namespace) -> str:
    """How the run's sessions were made, for its JSON line: the model's work per event depends on it."""
    if args.session_lengths is not None:
        return f"{args.sessions} concurrent, real lengths ({args.session_lengths.name})"
    life = f"{args.session_life} events each" if args.session_life else "each as long as the run"
    return f"{args.sessions} concurrent, {life}"


def real_length_sessions(args: argparse.Namespace, tag: str) -> RealLengthSessions | None:
    """The run's session names when ``--session-lengths`` is given."""
    if args.session_lengths is None:
        return None
    return RealLengthSessions(tag, args.sessions, session_lengths(args.session_lengths), args.seed)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Broker, login, topics, client and the events' shape: shared with deploy/drain.py."""
    env = os.environ.get
    parser.add_argument("--bootstrap", default=env("RECO_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    stack = Path(env("RECO_STACK_DIR", ".stack"))
    parser.add_argument("--security-protocol", choices=["SASL_SSL", "PLAINTEXT"],
                        default=env("RECO_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"))
    parser.add_argument("--user", default="admin")
    parser.add_argument("--ca-file", type=Path, default=Path(env("RECO_KAFKA_CA_FILE", str(stack / "tls" / "ca.pem"))))
    parser.add_argument("--secrets-file", type=Path, default=stack / "secrets.env")
    parser.add_argument("--events-topic", default=env("RECO_EVENTS_TOPIC", "events"))
    parser.add_argument("--recommendations-topic", default=env("RECO_RECOMMENDATIONS_TOPIC", "recommendations"))
    parser.add_argument("--group", default=env("RECO_CONSUMER_GROUP", "streamreco"))
    parser.add_argument("--client", choices=sorted(CLIENTS), default="kafka",
                        help="kafka: kafka-python (pure Python); confluent: confluent-kafka (librdkafka, "
                             "a fraction of the CPU)")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--session-life", type=int, default=0,
                        help="events per session before a new one replaces it (0: the same sessions throughout)")
    parser.add_argument("--session-lengths", type=Path, default=None, metavar="VIEWS_CSV",
                        help="draw each session's length from a DIGINETICA views file's sessions "
                             "(RealLengthSessions) instead of --session-life")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pid-dir", type=Path, default=Path(env("RECO_RUN_DIR", ".run")) / "pids")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_arguments(parser)
    parser.add_argument("--echo-topic", default="bench.echo")
    parser.add_argument("--echo", action="store_true", help="time Kafka's own round trip instead")
    parser.add_argument("--arrivals", action="store_true", help="also print every receive time (deploy/faults.py)")
    parser.add_argument("--rate", type=float, default=200, help="events per second (0 = burst)")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--events", type=int, default=5000, help="events of a burst (--rate 0)")
    parser.add_argument("--idle-timeout", type=float, default=20, help="stop waiting after this many quiet seconds")
    parser.add_argument("--tag", help="the event id prefix (default: a random one)")
    parser.add_argument("--own-items", action="store_true",
                        help="item ids carry the tag too, so their counters see only this run's events")
    print(json.dumps(run(parser.parse_args())), flush=True)


if __name__ == "__main__":
    main()
