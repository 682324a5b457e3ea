"""deploy/kafka_access.py: each Kafka user gets exactly the access its role needs."""
from kafka.admin import ACLOperation as Op
from kafka.admin import ACLResourcePatternType, ResourceType

from contract.settings import Settings
from deploy.kafka_access import acls, grants


def allowed(role: str) -> set[tuple[str, str, Op]]:
    return {(acl.resource_pattern.resource_type.name, acl.resource_pattern.resource_name, acl.operation)
            for acl in acls(Settings()) if acl.principal == f"User:{role}"}


def test_the_producer_may_only_write_events():
    assert allowed("producer") == {("TOPIC", "events", Op.WRITE), ("TOPIC", "events", Op.DESCRIBE)}


def test_the_reader_reads_events_recommendations_and_dead_letters_and_writes_nothing():
    reader = allowed("reader")
    assert {name for _, name, _ in reader} == {"events", "recommendations", "events.dlq"}
    assert {op for _, _, op in reader} == {Op.READ, Op.DESCRIBE}


def test_the_worker_reads_events_writes_its_outputs_and_owns_only_its_groups_topics():
    worker = allowed("worker")
    writes = {name for _, name, op in worker if op == Op.WRITE}
    assert writes == {"recommendations", "events.dlq", "events.by-item", "events.by-user"}
    assert ("TOPIC", "events", Op.WRITE) not in worker  # it never injects events
    assert ("GROUP", "streamreco", Op.READ) in worker
    prefixed = [g for g in grants(Settings()) if g.pattern == ACLResourcePatternType.PREFIXED]
    assert [(g.role, g.resource, g.name) for g in prefixed] == [("worker", ResourceType.TOPIC, "streamreco-")]


def test_topic_names_come_from_the_settings():
    renamed = Settings(events_topic="shop.events", consumer_group="reco2")
    names = {acl.resource_pattern.resource_name for acl in acls(renamed)}
    assert "shop.events" in names and "reco2" in names and "events" not in names
