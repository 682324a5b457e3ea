"""An outside client of the running stack for the stack tests: it knows only the topics and the
message contract."""
from __future__ import annotations

import json
import os
import subprocess
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from contract.messages import Event
from contract.settings import DURABLE_PRODUCER, get_settings


def wait_until(condition, timeout_s: float, every_s: float = 0.5):
    """Polls ``condition()`` until it returns something truthy or ``timeout_s`` passes; returns its
    last value. Tests wait for what they need instead of sleeping a guessed time."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(every_s)
    return value


def restart_worker(**env: str) -> None:
    """The worker stopped and started again with ``env`` added to this process's environment."""
    subprocess.run(["bash", "deploy/down.sh", "worker"], check=True)
    subprocess.run(["bash", "deploy/up.sh", "worker"], check=True, env=os.environ | env)


class Shopper:
    """A site as an outsider: sends events as the `producer` Kafka user and reads back the
    recommendation of each as `reader`."""

    def __init__(self) -> None:
        settings = self.settings = get_settings()
        self.producer = KafkaProducer(**settings.kafka_client_options("producer"), **DURABLE_PRODUCER)
        self.consumer = KafkaConsumer(**settings.kafka_client_options("reader"), enable_auto_commit=False)
        partitions = self.consumer.partitions_for_topic(settings.recommendations_topic) or set()
        self.consumer.assign([TopicPartition(settings.recommendations_topic, p) for p in partitions])
        self.consumer.seek_to_end()
        self.arrived: list[dict] = []
        for tp in self.consumer.assignment():  # resolve the end offsets now, before anything is sent
            self.consumer.position(tp)

    def send(self, events: list[Event]) -> None:
        for event in events:
            self.producer.send(self.settings.events_topic, key=event.session_id.encode(),
                               value=event.model_dump_json().encode())
        self.producer.flush()

    def read(self, event_ids: set[str], timeout_s: float = 60, settle_s: float = 0.0) -> dict[str, dict]:
        """The recommendation of each of these events (the last copy); every copy received, in
        order of arrival, is appended to ``self.arrived``. ``settle_s``: keep reading that long
        after the last one, for duplicates."""
        recs: dict[str, dict] = {}
        deadline = time.monotonic() + timeout_s
        while len(recs) < len(event_ids) and time.monotonic() < deadline:
            for rec in self.poll(event_ids):
                recs[rec["event_id"]] = rec
        settled = time.monotonic() + settle_s
        while time.monotonic() < settled:
            self.poll(event_ids)
        assert len(recs) == len(event_ids), f"{len(event_ids) - len(recs)} of {len(event_ids)} recommendations missing"
        return recs

    def poll(self, event_ids: set[str]) -> list[dict]:
        got = [json.loads(m.value) for batch in self.consumer.poll(timeout_ms=500).values() for m in batch]
        mine = [rec for rec in got if rec["event_id"] in event_ids]
        self.arrived += mine
        return mine

    def step(self, events: list[Event]) -> dict[str, dict]:
        """Sends one event per session and waits for all their recommendations: the next step's
        events come after these in every session."""
        self.send(events)
        return self.read({e.event_id for e in events})

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()

