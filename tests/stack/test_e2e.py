"""End to end on the real stack: Kafka (KRaft), the Faust worker, Feast on Redis, Triton.

Needs `make up` with RECO_ONLINE_STORE=redis and a trained model (``make test`` does both).
"""
import json
import random
import time
import uuid
from collections import Counter, defaultdict

import pytest
from kafka import KafkaProducer

from contract.settings import DURABLE_PRODUCER, get_settings
from features.audit import feast_settled

pytestmark = pytest.mark.stack

SESSIONS, EVENTS_PER_SESSION, MALFORMED = 100, 10, 20


def build_events(tag: str, seed: int = 11):
    """1,000 messages over 100 sessions, 20 of them malformed in every way the worker must catch."""
    rng = random.Random(seed)
    funnel = ["view", "view", "click", "view", "add_to_cart", "view", "purchase", "view", "click", "view"]
    valid = []
    for n in range(EVENTS_PER_SESSION):
        for s in range(SESSIONS):
            # Half the items are in the model's catalogue, half are new to it (and to this run).
            item = f"i{rng.randint(1, 300)}" if rng.random() < 0.5 else f"{tag}-new{rng.randint(0, 40)}"
            valid.append({"event_id": f"{tag}-s{s}-e{n}", "event_type": funnel[n], "session_id": f"{tag}-s{s}",
                          "user_id": f"{tag}-u{s % 30}" if s % 2 else None, "item_id": item,
                          "ts": int(time.time() * 1000), "price": 10.0, "category_id": f"c{s % 5}"})
    bad_kinds = [
        (lambda e: f"{tag} this is not json".encode(), "not_json"),
        (lambda e: json.dumps({k: v for k, v in e.items() if k != "item_id"}).encode(), "invalid_schema"),
        (lambda e: json.dumps({**e, "ts": "later"}).encode(), "invalid_schema"),
        (lambda e: json.dumps({**e, "event_type": "wishlist"}).encode(), "unknown_event_type"),
        (lambda e: json.dumps({**e, "blob": "x" * 1_100_000}).encode(), "too_large"),
    ]
    bad_at = set(rng.sample(range(len(valid)), MALFORMED))
    messages, expected_reasons, kept = [], Counter(), []
    for idx, event in enumerate(valid):
        if idx in bad_at:
            make, reason = bad_kinds[sum(expected_reasons.values()) % len(bad_kinds)]
            messages.append((event["session_id"], make(event)))
            expected_reasons[reason] += 1
        else:
            messages.append((event["session_id"], json.dumps(event).encode()))
            kept.append(event)
    return messages, kept, expected_reasons


def test_events_in_recommendations_and_dead_letters_out(collect, worker_metric):
    settings = get_settings()
    assert settings.online_store == "redis", "the end-to-end test runs Feast on Redis (RECO_ONLINE_STORE=redis)"
    tag = f"e2e{uuid.uuid4().hex[:8]}"
    messages, valid, expected_reasons = build_events(tag)
    assert len(messages) == 1000 and len(valid) == 980

    producer = KafkaProducer(**settings.kafka_client_options("producer"), **DURABLE_PRODUCER,
                             max_request_size=4_000_000)
    for key, value in messages:
        producer.send(settings.events_topic, key=key.encode(), value=value)
    producer.flush()

    recs, dlq = collect(tag, want_recs=len(valid), want_dlq=MALFORMED)

    # Every valid event: exactly one recommendation (one copy, nothing published twice), k distinct
    # items, tokens on each, no purchased item.
    assert set(recs) == {e["event_id"] for e in valid}
    assert not recs.duplicated(), f"published more than once: {list(recs.duplicated().items())[:5]}"
    purchased = defaultdict(set)
    for event in valid:  # in produced order, which is each session's order
        if event["event_type"] == "purchase":
            purchased[event["session_id"]].add(event["item_id"])
        rec = recs[event["event_id"]]
        ids = [item["item_id"] for item in rec["items"]]
        assert len(ids) == settings.k and len(set(ids)) == settings.k, rec
        assert all(item["explanation"] for item in rec["items"]), rec
        assert not purchased[event["session_id"]] & set(ids), rec
        assert event["item_id"] not in ids, rec  # never the item on screen
        assert rec["session_id"] == event["session_id"] and rec["fallback"] is None, rec

    assert worker_metric("reco_model_catalogue_mismatch") == 0  # the served model is of this site's catalogue

    # Every malformed message: one dead letter with its reason.
    assert len(dlq) == MALFORMED
    assert Counter(d["reason"] for d in dlq) == expected_reasons
    assert all(d["error"] and d["topic"] == settings.events_topic for d in dlq)

    # Feast's own online read returns what the events imply, once the worker's write-behind has
    # caught up: sessions at its next flush (every RECO_FEATURE_FLUSH_S), which also sends the
    # tallies, and the counters those changed at the one after. Polled: a busy machine flushes later.
    sessions = sorted({e["session_id"] for e in valid})[:10]
    new_items = sorted({e["item_id"] for e in valid if e["item_id"].startswith(tag)})
    assert not feast_settled(get_settings(), valid, sessions, new_items)
