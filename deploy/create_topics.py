"""Create the stack's Kafka topics (names and partition counts from contract.settings.Settings)
and, on a SASL_SSL broker, its users and ACLs (deploy/kafka_access.py). Connects as admin.

Idempotent: a missing topic is created; an existing topic with fewer partitions than the settings
want gets partitions added (Kafka cannot remove any, so one with more is left as it is). Adding
partitions moves keys: a session's later events may land on another partition than its earlier
ones, so per-key order holds only among the events sent after the change.
Every topic gets Settings.replication_factor replicas (min(3, brokers)) and needs all but one of
them in sync to take a write (min.insync.replicas; producers send with acks=all). Waits up to
--timeout seconds for the broker to answer, and at the end until every partition of every topic
has all its replicas in sync again (a restarted broker has caught up). deploy/up.sh runs it after
Kafka starts.

    .venv/bin/python deploy/create_topics.py [--timeout 60]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic  # noqa: E402
from kafka.errors import InvalidPartitionsError, KafkaError, TopicAlreadyExistsError  # noqa: E402

from contract.settings import Settings, get_settings  # noqa: E402
from deploy.kafka_access import apply_access  # noqa: E402


def wanted_topics() -> dict[str, int]:
    s = get_settings()
    return {
        s.events_topic: s.topic_partitions,
        s.recommendations_topic: s.topic_partitions,
        s.dlq_topic: s.topic_partitions,
        s.control_topic: 1,  # erasure requests: few, and every worker reads all of them
        # The tallies for the owners of the item and user counters: the workers route by partition
        # number, so these have the partitions of `events`.
        s.item_tally_topic: s.topic_partitions,
        s.user_tally_topic: s.topic_partitions,
    }


def topic_configs() -> dict[str, dict[str, str]]:
    """Every topic keeps messages topic_retention_hours (an erased shopper's events live on the
    topics at most that long) and takes a write once min_insync_replicas have it; a dead letter
    carries its message's bytes, up to 4/3 larger than the message (base64)."""
    s = get_settings()
    common = {"retention.ms": str(s.topic_retention_hours * 3600 * 1000),
              "min.insync.replicas": str(s.min_insync_replicas)}
    configs = {name: dict(common) for name in wanted_topics()}
    configs[s.dlq_topic]["max.message.bytes"] = str(s.max_dlq_record_bytes)
    return configs


def connect(settings: Settings, timeout_s: float) -> KafkaAdminClient:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(**settings.kafka_client_options("admin"), client_id="create-topics",
                                    request_timeout_ms=10_000)
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"Kafka at {settings.bootstrap_servers} not reachable after {timeout_s:.0f}s: {exc!r}")
            time.sleep(1)


def add_partitions(admin: KafkaAdminClient, grow: dict[str, int], have: dict[str, int], timeout_s: float) -> None:
    """Raise each topic in ``grow`` to its partition count; updates ``have`` once the broker's
    metadata shows the new partitions (or the timeout passes)."""
    for name, want in grow.items():
        print(f"topic {name}: adding partitions {have[name]} -> {want}. Keys (sessions, on events) "
              "hash to other partitions from now on: per-key order holds only among messages sent after "
              "this; a key's earlier messages may still sit on its old partition.", file=sys.stderr)
    try:
        admin.create_partitions(dict(grow), timeout_ms=30_000)
    except InvalidPartitionsError as exc:  # raced with another grower: the count is there already
        print(f"create_partitions: {exc!r}", file=sys.stderr)
    deadline = time.monotonic() + timeout_s
    while True:
        counts = {m.get("name") or m.get("topic"): len(m.get("partitions") or [])
                  for m in admin.describe_topics(list(grow)) if not m.get("error_code")}
        if all(counts.get(name, 0) >= want for name, want in grow.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    have.update(counts)
    print("partitions added:", ", ".join(f"{name}({counts.get(name, 0)})" for name in grow))


def under_replicated(admin: KafkaAdminClient) -> list[str]:
    """Partitions of any topic (Kafka's internal ones too) with a replica out of sync."""
    return [f"{m['name']}-{p['partition_index']}" for m in admin.describe_topics() if not m.get("error_code")
            for p in m["partitions"] if len(p["isr_nodes"]) < len(p["replica_nodes"])]


def wait_in_sync(admin: KafkaAdminClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (lagging := under_replicated(admin)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if lagging:
        raise SystemExit(f"{len(lagging)} partitions still under-replicated after {timeout_s:.0f}s: {lagging[:5]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    settings = get_settings()
    admin = connect(settings, args.timeout)
    try:
        if settings.kafka_security_protocol == "SASL_SSL":
            apply_access(admin, settings)
        wanted = wanted_topics()
        existing = set(admin.list_topics())
        configs = topic_configs()
        new = [NewTopic(name, num_partitions=n, replication_factor=settings.replication_factor,
                        topic_configs=configs.get(name, {}))
               for name, n in wanted.items() if name not in existing]
        if new:
            try:
                admin.create_topics(new, timeout_ms=30_000)
            except TopicAlreadyExistsError:
                pass  # raced with another creator
            print("created:", ", ".join(f"{t.name}({t.num_partitions})" for t in new))
        # Wait until the broker's metadata shows every topic with its partitions.
        deadline = time.monotonic() + args.timeout
        while True:
            described = admin.describe_topics(list(wanted))
            have = {m.get("name") or m.get("topic"): len(m.get("partitions") or []) for m in described
                    if not m.get("error_code")}
            if all(have.get(name, 0) > 0 for name in wanted) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        # Existing topics (a stack from before this setting) get the configs too; idempotent.
        altered = [ConfigResource(ConfigResourceType.TOPIC, name, configs=cfg)
                   for name, cfg in configs.items() if name in existing]
        if altered:
            admin.alter_configs(altered)
        grow = {name: want for name, want in wanted.items() if 0 < have.get(name, 0) < want}
        if grow:
            add_partitions(admin, grow, have, args.timeout)
        for name, want in wanted.items():
            if have.get(name, 0) < want:
                print(f"warning: topic {name} has {have.get(name, 0)} partitions, settings want {want}",
                      file=sys.stderr)
        wait_in_sync(admin, args.timeout)
        print("topics ready:", ", ".join(f"{name}({n})" for name, n in wanted.items()),
              f"replicas {settings.replication_factor}, all in sync")
    finally:
        admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
