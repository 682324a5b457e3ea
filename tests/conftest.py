from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} is absent: the shared datasets are provided beside the project root")
    return SHARED_DATA


@pytest.fixture(scope="module")
def live_load():
    """Pushes a few hundred synthetic events (and a few invalid ones) through the running worker
    and returns once their recommendations are out."""
    import json
    import time
    import uuid

    from kafka import KafkaConsumer

    from serving.data import generate_synthetic
    from stream.config import get_settings
    from stream.produce import make_producer, session_events

    settings = get_settings()
    prefix = f"load{uuid.uuid4().hex[:6]}-"
    events = list(session_events(generate_synthetic(40, seed=0), stamp_now=True, prefix=prefix))[:300]
    producer = make_producer(settings.bootstrap_servers)
    for event in events:
        producer.send(settings.events_topic, key=event.session_id.encode(), value=event.model_dump_json().encode())
    for bad in (b"not json", json.dumps({"event_type": "wishlist"}).encode()):
        producer.send(settings.events_topic, key=prefix.encode(), value=bad)
    producer.flush()
    consumer = KafkaConsumer(settings.recommendations_topic, bootstrap_servers=settings.bootstrap_servers,
                             auto_offset_reset="earliest", group_id=f"load-{prefix}", consumer_timeout_ms=2000)
    seen, deadline = set(), time.time() + 180
    while len(seen) < len(events) and time.time() < deadline:
        seen |= {json.loads(m.value)["event_id"] for m in consumer if m.key.decode().startswith(prefix)}
    consumer.close()
    assert len(seen) >= len(events), f"only {len(seen)} of {len(events)} recommendations arrived"
    return len(events)
