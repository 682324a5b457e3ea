"""The live catalogue on the real stack: a worker whose site is not the served model's catalogue
recommends only items its stream has named (stream/catalogue.py).

Restarts the worker with RECO_CATALOGUE=another-shop, then with the environment it had.
"""
import json
import time
import uuid

import pytest
from kafka import KafkaProducer

from contract.settings import DURABLE_PRODUCER, get_settings
from tests.stack._client import restart_worker

pytestmark = pytest.mark.stack


@pytest.fixture
def another_shop():
    restart_worker(RECO_CATALOGUE="another-shop")
    try:
        yield
    finally:
        restart_worker()


def test_a_model_of_another_catalogue_recommends_only_items_the_stream_named(another_shop, collect, worker_metric):
    settings = get_settings()
    tag = f"cat{uuid.uuid4().hex[:8]}"
    # The shop's own items, and ten that the served (synthetic) model also knows: only those ten
    # of its candidates may be shown here, because this stream named them.
    shop_items = [f"{tag}-p{n}" for n in range(30)] + [f"i{n}" for n in range(1, 11)]
    events = [{"event_id": f"{tag}-e{n}", "event_type": "view", "session_id": f"{tag}-s{n % 20}", "user_id": None,
               "item_id": shop_items[(n * 7) % len(shop_items)], "ts": int(time.time() * 1000), "price": 1.0,
               "category_id": None} for n in range(200)]
    producer = KafkaProducer(**settings.kafka_client_options("producer"), **DURABLE_PRODUCER)
    for event in events:
        producer.send(settings.events_topic, key=event["session_id"].encode(), value=json.dumps(event).encode())
    producer.flush()
    producer.close()

    recs, _ = collect(tag, want_recs=len(events), want_dlq=0)
    assert set(recs) == {e["event_id"] for e in events}
    shown = {item["item_id"] for rec in recs.values() for item in rec["items"]}
    assert shown <= set(shop_items), shown - set(shop_items)
    assert shown & {f"i{n}" for n in range(1, 11)}  # the model's candidates that the stream named do get through
    assert worker_metric("reco_model_catalogue_mismatch") == 1
    assert worker_metric("reco_candidates_off_catalogue_total") > 0
