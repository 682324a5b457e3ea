"""Who may do what on the local broker: one SCRAM-SHA-512 user per client role
(contract.settings.KafkaRole) and the ACLs each role needs, nothing more.

The broker denies whatever no ACL allows (allow.everyone.if.no.acl.found=false); `admin` is a super
user and needs none. deploy/create_topics.py applies these as admin on every `make up`: the
credentials are upserted from secrets.env (a changed password takes effect) and ACLs that exist
already are left as they are.
"""
from __future__ import annotations

from typing import NamedTuple

from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from contract.settings import KafkaRole, Settings

CLIENT_ROLES: tuple[KafkaRole, ...] = ("worker", "producer", "reader")  # admin is made at format


class Grant(NamedTuple):
    role: KafkaRole
    resource: ResourceType
    name: str
    operations: tuple[ACLOperation, ...]
    pattern: ACLResourcePatternType = ACLResourcePatternType.LITERAL


def grants(settings: Settings) -> list[Grant]:
    """The access each role needs. Faust names its own topics (the partition assignor's leader
    topic, any changelogs) ``<consumer group>-...`` and creates them at start-up."""
    read = (ACLOperation.READ, ACLOperation.DESCRIBE)
    write = (ACLOperation.WRITE, ACLOperation.DESCRIBE)
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    s = settings
    return [
        Grant("worker", topic, s.events_topic, read),
        Grant("worker", topic, s.control_topic, read),
        Grant("worker", topic, s.recommendations_topic, write),
        Grant("worker", topic, s.dlq_topic, write),
        Grant("worker", topic, s.item_tally_topic, read + write[:1]),
        Grant("worker", topic, s.user_tally_topic, read + write[:1]),
        Grant("worker", group, s.consumer_group, read),
        Grant("worker", topic, f"{s.consumer_group}-", (ACLOperation.ALL,), ACLResourcePatternType.PREFIXED),
        Grant("producer", topic, s.events_topic, write),
        Grant("reader", topic, s.events_topic, read),
        Grant("reader", topic, s.recommendations_topic, read),
        Grant("reader", topic, s.dlq_topic, read),
    ]


def acls(settings: Settings) -> list[ACL]:
    return [ACL(principal=f"User:{g.role}", host="*", operation=op, permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(g.resource, g.name, g.pattern))
            for g in grants(settings) for op in g.operations]


def apply_access(admin: KafkaAdminClient, settings: Settings) -> None:
    """Upserts every client role's SCRAM credential and creates the ACLs (idempotent)."""
    upserts = [UserScramCredentialUpsertion(role, ScramMechanism.SCRAM_SHA_512, settings.kafka_password(role))
               for role in CLIENT_ROLES]
    failed = {user: error for user, error in admin.alter_user_scram_credentials(upserts).items() if error}
    if failed:
        raise SystemExit(f"Kafka refused the SCRAM credentials of {failed}")
    result = admin.create_acls(acls(settings))
    if result.get("failed"):
        raise SystemExit(f"Kafka refused ACLs: {result['failed']}")
