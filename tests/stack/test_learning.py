"""The learning loop on the real stack: online attribution counted exactly in Prometheus."""
from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from contract.messages import Event
from contract.settings import get_settings
from features.feedback import rank_bucket

pytestmark = pytest.mark.stack


class Shopper:
    """A site as an outsider: sends events and reads back the recommendation of each."""

    def __init__(self) -> None:
        settings = self.settings = get_settings()
        self.producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        self.consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
        partitions = self.consumer.partitions_for_topic(settings.recommendations_topic) or set()
        self.consumer.assign([TopicPartition(settings.recommendations_topic, p) for p in partitions])
        self.consumer.seek_to_end()
        for tp in self.consumer.assignment():  # resolve the end offsets now, before anything is sent
            self.consumer.position(tp)

    def send(self, events: list[Event]) -> None:
        for event in events:
            self.producer.send(self.settings.events_topic, key=event.session_id.encode(),
                               value=event.model_dump_json().encode())
        self.producer.flush()

    def read(self, event_ids: set[str], timeout_s: float = 60) -> dict[str, dict]:
        recs: dict[str, dict] = {}
        deadline = time.monotonic() + timeout_s
        while len(recs) < len(event_ids) and time.monotonic() < deadline:
            for batch in self.consumer.poll(timeout_ms=500).values():
                for message in batch:
                    rec = json.loads(message.value)
                    if rec["event_id"] in event_ids:
                        recs[rec["event_id"]] = rec
        assert len(recs) == len(event_ids), f"{len(event_ids) - len(recs)} recommendations missing"
        return recs

    def step(self, events: list[Event]) -> dict[str, dict]:
        """Sends one event per session and waits for all their recommendations: the next step's
        events come after these in every session."""
        self.send(events)
        return self.read({e.event_id for e in events})

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()


def prometheus_counts(name: str, by: str) -> Counter:
    url = f"http://127.0.0.1:{get_settings().prometheus_port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": f"sum by ({by}) ({name})"})
    body = json.load(urllib.request.urlopen(url, timeout=10))
    labels = by.split(", ")
    return Counter({tuple(r["metric"].get(label, "") for label in labels): int(float(r["value"][1]))
                    for r in body["data"]["result"]})


def test_clicks_on_recommended_items_are_attributed_exactly_by_version_and_rank():
    """20 sessions, four steps each: a view; a click on the first item recommended for it; an
    add-to-cart of the fifth item recommended for the click; a view of an item never recommended.
    Prometheus must count exactly 20 click hits at rank 1, 20 add-to-cart hits at rank 2-5 and no
    view hit, under the versions that made those recommendations."""
    tag, shopper = f"att{uuid.uuid4().hex[:8]}", Shopper()
    attributed_by = "event_type, model_version, rank_bucket"
    before = prometheus_counts("reco_attributed_events_total", attributed_by)
    before_recs = prometheus_counts("reco_recommendations_total", "model_version")
    sessions = [f"{tag}-s{n}" for n in range(20)]

    def events(step: int, items: list[str], kind: str) -> list[Event]:
        return [Event(event_id=f"{s}-e{step}", event_type=kind, session_id=s, item_id=item,
                      ts=int(time.time() * 1000)) for s, item in zip(sessions, items)]

    try:
        views = shopper.step(events(1, [f"i{10 + n}" for n in range(20)], "view"))
        first = [views[f"{s}-e1"] for s in sessions]
        clicks = shopper.step(events(2, [r["items"][0]["item_id"] for r in first], "click"))
        second = [clicks[f"{s}-e2"] for s in sessions]
        carts = shopper.step(events(3, [r["items"][4]["item_id"] for r in second], "add_to_cart"))
        misses = shopper.step(events(4, [f"{tag}-never-recommended-{n}" for n in range(20)], "view"))
    finally:
        shopper.close()

    expected = Counter([("click", r["model_version"], rank_bucket(1)) for r in first] +
                       [("add_to_cart", r["model_version"], rank_bucket(5)) for r in second])
    expected_recs = Counter(r["model_version"] for step in (views, clicks, carts, misses) for r in step.values())
    deadline, got, got_recs = time.monotonic() + 30, Counter(), Counter()
    while time.monotonic() < deadline:  # Prometheus scrapes the worker every 5 s
        got = prometheus_counts("reco_attributed_events_total", attributed_by) - before
        got_recs = prometheus_counts("reco_recommendations_total", "model_version") - before_recs
        if got == expected and got_recs == expected_recs:
            break
        time.sleep(1)
    assert got == expected
    assert got_recs == expected_recs
