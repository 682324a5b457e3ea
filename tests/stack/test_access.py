"""Nobody gets in who should not, on the real stack (`make up`: SASL_SSL broker, Redis with an ACL user).

Kafka: a client without credentials, with TLS but no login, with a wrong password or as an unknown
user is refused; each user may do what deploy/kafka_access.py grants and nothing else; the worker
itself runs on SASL, so events from the `producer` user come back as recommendations read by
`reader`. Redis: no login and a wrong password are refused; the Feast user works but cannot run
admin or dangerous commands. Every server of the stack listens on 127.0.0.1 only.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import uuid
from pathlib import Path

import psutil
import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)

from contract.messages import Event
from contract.settings import DURABLE_PRODUCER, KafkaRole, get_settings
from tests.stack._client import Shopper

settings = get_settings()
pytestmark = pytest.mark.skipif(settings.kafka_security_protocol != "SASL_SSL",
                                reason="the access tests need the local SASL_SSL broker (`make up`)")
QUICK = {"bootstrap_timeout_ms": 5000, "request_timeout_ms": 5000}  # a refusal is seen in seconds
QUICK_PRODUCER = {**QUICK, "max_block_ms": 5000}


def producer_as(role: KafkaRole, **overrides) -> KafkaProducer:
    return KafkaProducer(**{**settings.kafka_client_options(role), **overrides}, **DURABLE_PRODUCER, **QUICK_PRODUCER)


def refused_to_connect(caplog: pytest.LogCaptureFixture, **connection) -> str:
    """Connects with these options and sends one event; returns what kafka-python logged on the way
    to its refusal (the send must not succeed)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kafka"), pytest.raises(KafkaTimeoutError):
        KafkaProducer(**connection, **QUICK_PRODUCER).send(settings.events_topic, b"{}").get(timeout=5)
    return caplog.text


def failed_logins() -> int:
    """The brokers' own count, from their logs (kafka.log, or kafka-1.log ... with several), of
    logins refused for invalid credentials."""
    return sum("Failed authentication" in line and "invalid credentials" in line
               for log in (settings.run_dir / "logs").glob("kafka*.log")
               for line in log.read_text(errors="replace").splitlines())


@pytest.mark.parametrize("who", ["no TLS, no login", "TLS, no login", "wrong password", "unknown user"])
def test_a_client_without_valid_credentials_is_refused(caplog, who):
    login = settings.kafka_client_options("producer")
    connection = {
        "no TLS, no login": {"bootstrap_servers": settings.bootstrap_servers},
        "TLS, no login": {"bootstrap_servers": settings.bootstrap_servers, "security_protocol": "SSL",
                          "ssl_context": settings.kafka_ssl_context()},
        "wrong password": {**login, "sasl_plain_password": "not-the-password"},
        "unknown user": {**login, "sasl_plain_username": "mallory"},
    }[who]
    before = failed_logins()
    refused_to_connect(caplog, **connection)
    if who in ("wrong password", "unknown user"):
        assert failed_logins() > before, "the broker logged no refused login"


def test_a_client_that_does_not_trust_the_stacks_ca_is_refused(caplog):
    untrusting = {**settings.kafka_client_options("producer"), "ssl_context": ssl.create_default_context()}
    logged = refused_to_connect(caplog, **untrusting)
    assert "CERTIFICATE_VERIFY_FAILED" in logged, logged[-2000:]


def read_one(role: KafkaRole, topic: str) -> None:
    consumer = KafkaConsumer(**settings.kafka_client_options(role), enable_auto_commit=False, **QUICK)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning()
        consumer.poll(timeout_ms=3000)
        consumer.position(partition)  # a refused fetch may leave poll empty; this raises it
    finally:
        consumer.close()


def test_the_producer_may_write_events_and_nothing_else():
    producer = producer_as("producer")
    try:
        producer.send(settings.events_topic, b"not json: dead-lettered").get(timeout=10)  # allowed
        for topic in (settings.recommendations_topic, settings.dlq_topic, settings.control_topic,
                      settings.item_tally_topic):
            with pytest.raises(TopicAuthorizationFailedError):
                producer.send(topic, b"{}").get(timeout=10)
    finally:
        producer.close()
    with pytest.raises(TopicAuthorizationFailedError):
        read_one("producer", settings.events_topic)


def test_the_reader_may_read_but_not_write_and_the_worker_may_not_inject_events():
    read_one("reader", settings.recommendations_topic)  # allowed
    for role in ("reader", "worker"):
        producer = producer_as(role)  # type: ignore[arg-type]
        try:
            # reader may write nowhere, so the broker refuses it a producer id first (cluster
            # authorisation); worker gets as far as the topic.
            with pytest.raises(KafkaError, match="AuthorizationFailed"):
                producer.send(settings.events_topic, b"{}").get(timeout=10)
        finally:
            producer.close()
    with pytest.raises(TopicAuthorizationFailedError):
        read_one("reader", settings.control_topic)


def test_only_the_admin_manages_topics():
    """Refused by the broker's authorizer (its error code, not a timeout or a lost connection), and
    the topic does not exist afterwards, as the admin sees it."""
    intruders = []
    for role in ("producer", "reader", "worker"):
        admin = KafkaAdminClient(**settings.kafka_client_options(role), **QUICK)  # type: ignore[arg-type]
        name = f"intruder-{role}-{uuid.uuid4().hex[:6]}"
        intruders.append(name)
        try:
            with pytest.raises((TopicAuthorizationFailedError, ClusterAuthorizationFailedError)):
                admin.create_topics([NewTopic(name, 1, 1)], timeout_ms=5000)
        finally:
            admin.close()
    admin = KafkaAdminClient(**settings.kafka_client_options("admin"), **QUICK)  # type: ignore[arg-type]
    try:
        assert not set(intruders) & set(admin.list_topics())
    finally:
        admin.close()


def test_events_from_the_producer_user_come_back_as_recommendations_through_the_sasl_worker():
    tag = f"acc{uuid.uuid4().hex[:6]}"
    shopper = Shopper()  # producer writes, reader reads: the worker between them logs in as worker
    try:
        events = [Event(event_id=f"{tag}-{n}", event_type="view", session_id=f"{tag}-s{n % 5}",
                        user_id=f"{tag}-u", item_id=f"i{n + 1}", ts=1_790_000_000_000 + n) for n in range(20)]
        recs = shopper.step(events)
    finally:
        shopper.close()
    assert set(recs) == {e.event_id for e in events}
    assert all(len(rec["items"]) == settings.k for rec in recs.values())


def test_redis_lets_in_only_its_user_and_not_for_admin_commands():
    assert settings.redis_password.get_secret_value(), "`make setup` writes RECO_REDIS_PASSWORD"
    host = {"host": settings.redis_host, "port": settings.redis_port, "socket_timeout": 5}
    with pytest.raises(redis.AuthenticationError):  # the default user is off
        redis.Redis(**host).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(**host, username=settings.redis_user, password="not-the-password").ping()
    feast = redis.Redis(**host, **settings.redis_auth)
    assert feast.ping()
    for command in (("FLUSHALL",), ("CONFIG", "GET", "dir"), ("KEYS", "*"), ("SHUTDOWN",)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            feast.execute_command(*command)


def test_every_server_of_the_stack_listens_on_loopback_only():
    pid_dir = settings.run_dir / "pids"
    groups = {int(p.read_text()) for p in Path(pid_dir).glob("*.pid") if p.read_text().strip().isdigit()}
    stack = [proc for proc in psutil.process_iter(["pid"]) if _group(proc.pid) in groups]
    listening = {(conn.laddr.ip, conn.laddr.port, proc.name()) for proc in stack
                 for conn in proc.net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN}
    ports = {port for _, port, _ in listening}
    assert {settings.redis_port, settings.triton_grpc_port, settings.prometheus_port, settings.metrics_port,
            int(settings.bootstrap_servers.rsplit(":", 1)[1])} <= ports, listening
    exposed = sorted(entry for entry in listening if not _loopback(entry[0]))
    assert not exposed, f"listening beyond loopback: {exposed}"


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)  # Java and Triton listen on IPv4-mapped IPv6 (::ffff:127.0.0.1)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
