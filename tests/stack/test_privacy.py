"""Privacy on the real stack (Kafka, the worker, Feast on Redis): pseudonyms in Feast and on the
topic, rows that expire from Redis, and an erasure that leaves nothing of the person in Redis or
in the worker's memory."""
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from kafka import KafkaProducer

from contract.messages import Event
from contract.settings import DURABLE_PRODUCER, PROJECT_ROOT, get_settings
from features.feature_repo.definitions import session_state, user_stats
from features.privacy import pseudonym
from features.state import OnlineState, SessionState
from features.store import OnlineFeatures, RedisRows
from tests.stack._client import wait_until

pytestmark = pytest.mark.stack


def send(events: list[Event]) -> None:
    settings = get_settings()
    producer = KafkaProducer(**settings.kafka_client_options("producer"), **DURABLE_PRODUCER)
    for event in events:
        producer.send(settings.events_topic, key=event.session_id.encode(), value=event.model_dump_json().encode())
    producer.flush()
    producer.close()


def shopper_events(tag: str, user: str, session: str, n: int, start: int = 0) -> list[Event]:
    return [Event(event_id=f"{tag}-{session}-e{i}", event_type="view", session_id=f"{tag}-{session}",
                  user_id=f"{tag}-{user}", item_id=f"i{10 + i}", ts=int(time.time() * 1000), category_id="c1")
            for i in range(start, start + n)]




@pytest.fixture
def redis_rows() -> RedisRows:
    settings = get_settings()
    assert settings.online_store == "redis", "the privacy tests run Feast on Redis (RECO_ONLINE_STORE=redis)"
    return RedisRows(settings)


def test_feast_and_the_topic_carry_pseudonyms_and_every_row_has_its_views_ttl(collect, redis_rows):
    settings, tag = get_settings(), f"pv{uuid.uuid4().hex[:8]}"
    events = shopper_events(tag, "alice", "s1", 5)
    sent_at = time.monotonic()
    send(events)
    recs, _ = collect(tag, want_recs=len(events), want_dlq=0, deadline_s=120)
    stored_user = pseudonym(settings.pseudonym_key.get_secret_value().encode(), f"{tag}-alice")
    assert {r["user_id"] for r in recs.values()} == {stored_user}
    # Sessions reach Feast at the worker's next flush, the user counters their tallies changed after.
    wait_until(lambda: OnlineFeatures(settings).read_users([stored_user])[stored_user].event_count == 5, 30)

    users = OnlineFeatures(settings).read_users([stored_user, f"{tag}-alice"])
    assert users[stored_user].event_count == 5 and users[stored_user].session_ids == (f"{tag}-s1",)
    assert users[f"{tag}-alice"].event_count == 0  # nothing kept under the id the site sent
    session_ttl = redis_rows.client.ttl(redis_rows.key(session_state, f"{tag}-s1"))
    user_ttl = redis_rows.client.ttl(redis_rows.key(user_stats, stored_user))
    since_sent = time.monotonic() - sent_at + 1  # the keys were last written after the events were sent
    assert settings.session_ttl_s - since_sent < session_ttl <= settings.session_ttl_s
    assert settings.user_ttl_s - since_sent < user_ttl <= settings.user_ttl_s

    raw, client = f"{tag}-alice".encode(), redis_rows.client
    keys = list(client.scan_iter(count=10_000))
    for start in range(0, len(keys), 10_000):  # every key and value in Redis, in pipelined chunks
        chunk = keys[start:start + 10_000]
        with client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.hvals(key)
            values = pipe.execute()
        assert not [key for key, vals in zip(chunk, values) if raw in key or any(raw in v for v in vals)]

    # Nor in the worker's log or its metrics (it logs and labels by pseudonym, if at all).
    assert raw.decode() not in (settings.run_dir / "logs" / "worker.log").read_text(errors="replace")
    metrics_url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    assert raw.decode() not in urllib.request.urlopen(metrics_url, timeout=5).read().decode()


def test_an_expired_session_is_gone_from_redis_not_only_hidden(redis_rows):
    settings = get_settings().model_copy(update={"session_ttl_s": 1})
    features, session = OnlineFeatures(settings), f"ttl{uuid.uuid4().hex[:8]}"
    features.write(OnlineState(sessions={session: SessionState(("a",), ("view",), (), ("e1",), 1, 1)}))
    key = RedisRows(settings).key(session_state, session)
    assert redis_rows.client.exists(key) == 1
    wait_until(lambda: redis_rows.client.exists(key) == 0, timeout_s=10)  # a 1 s TTL, seen by Redis
    assert redis_rows.client.exists(key) == 0
    assert features.read_sessions([session])[session] == SessionState()


def test_an_erased_user_is_gone_from_redis_and_from_the_workers_memory(collect, redis_rows, worker_metric):
    settings, tag = get_settings(), f"er{uuid.uuid4().hex[:8]}"
    key = settings.pseudonym_key.get_secret_value().encode()
    bob, carol = pseudonym(key, f"{tag}-bob"), pseudonym(key, f"{tag}-carol")
    events = (shopper_events(tag, "bob", "s1", 4) + shopper_events(tag, "bob", "s2", 3)
              + shopper_events(tag, "carol", "s3", 2))
    send(events)
    collect(tag, want_recs=len(events), want_dlq=0, deadline_s=120)
    bob_keys = [redis_rows.key(session_state, f"{tag}-s1"), redis_rows.key(session_state, f"{tag}-s2"),
                redis_rows.key(user_stats, bob)]
    carol_keys = [redis_rows.key(session_state, f"{tag}-s3"), redis_rows.key(user_stats, carol)]
    wait_until(lambda: redis_rows.client.exists(*bob_keys, *carol_keys) == 5, 30)
    assert redis_rows.client.exists(*bob_keys, *carol_keys) == 5

    erasures_before = worker_metric("reco_erasures_total")
    out = subprocess.run([sys.executable, "-m", "features.erase", "--user", f"{tag}-bob"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "deleted session_state 2, user_stats 1" in out, out
    assert redis_rows.client.exists(*bob_keys) == 0 and redis_rows.client.exists(*carol_keys) == 2
    wait_until(lambda: worker_metric("reco_erasures_total") != erasures_before, timeout_s=30, every_s=0.2)
    assert worker_metric("reco_erasures_total") == erasures_before + 1

    # Bob comes back to session s1: the worker starts him from nothing, in memory and in Feast.
    send([Event(event_id=f"{tag}x-again", event_type="view", session_id=f"{tag}-s1", user_id=f"{tag}-bob",
                item_id="i99", ts=int(time.time() * 1000), category_id="c1")])
    recs, _ = collect(f"{tag}x", want_recs=1, want_dlq=0, deadline_s=60)
    cited = {t.split(":", 1)[1] for item in recs[f"{tag}x-again"]["items"] for t in item["explanation"]
             if t.startswith("view:")}
    assert cited <= {"i99"}, cited  # no token cites what he viewed before the erasure
    features = OnlineFeatures(settings)
    wait_until(lambda: features.read_users([bob])[bob].event_count == 1, 30)
    assert features.read_sessions([f"{tag}-s1"])[f"{tag}-s1"].event_count == 1
    user = features.read_users([bob])[bob]
    assert (user.event_count, user.session_count, user.session_ids) == (1, 1, (f"{tag}-s1",))
    assert redis_rows.client.exists(redis_rows.key(session_state, f"{tag}-s2")) == 0
