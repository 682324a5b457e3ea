"""Hostile input on the real stack: 10,000 generated messages (hypothesis) interleaved with valid
events. Each message's fate is decided by the contract's own parser: whatever it rejects must be
in events.dlq with that reason, whatever it accepts must be recommended, and the worker never
restarts."""
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.messages import InvalidEvent, parse_event
from contract.settings import DURABLE_PRODUCER, get_settings

pytestmark = pytest.mark.stack

BATCHES, PER_BATCH = 200, 50


def event_fields(tag: str) -> st.SearchStrategy[dict]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    return st.fixed_dictionaries({
        "event_id": st.just(f"{tag}-") | st.text(max_size=300) | scalars,
        "event_type": st.sampled_from(["view", "click", "add_to_cart", "purchase", "wish", ""]) | scalars,
        "session_id": st.sampled_from([f"{tag}-s1", f"{tag}-s2", ""]) | st.text(max_size=300) | scalars,
        "item_id": st.sampled_from(["i1", "i2", "i3"]) | st.text(max_size=300) | scalars,
        "ts": st.integers(min_value=-10**20, max_value=10**20) | scalars,
    }, optional={"user_id": scalars, "price": scalars, "category_id": scalars,
                 "extra": st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=10)})


def hostile(tag: str) -> st.SearchStrategy[bytes | None]:
    """Broken and deep JSON, wrong types, odd Unicode and control characters, invalid UTF-8, NaN,
    huge strings and arrays, far-off timestamps, empty and missing values."""
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")),
        event_fields(tag).map(lambda d: json.dumps(d).encode()),
        event_fields(tag).map(lambda d: json.dumps(d).replace("0.0", "NaN").encode()),
        st.integers(min_value=1000, max_value=60_000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(min_value=1000, max_value=20_000).map(lambda n: (b'{"a":' * n) + b"1" + b"}" * n),
        st.sampled_from([b"", None, b"null", b"[]", b"{}", b'"x"', b"1e999", b"\x00" * 50,
                         b'{"item_id": "\\ud800"}']),
        st.integers(min_value=1, max_value=200_000).map(lambda n: json.dumps({"event_id": tag, "items": [1] * n})
                                                        .encode()),
    )


def test_ten_thousand_hostile_messages_all_reach_the_dlq_and_valid_events_their_recommendation(
        collect, worker_metric):
    settings_ = get_settings()
    tag = f"fz{uuid.uuid4().hex[:6]}"
    pid_before = (settings_.run_dir / "pids" / "worker.process.pid").read_text()
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings_.kafka_client_options("producer"), **DURABLE_PRODUCER, linger_ms=5,
                             max_request_size=settings_.max_message_bytes - 1024)
    futures: list = []  # (send future, raw bytes)

    @settings(max_examples=BATCHES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(hostile(tag), min_size=PER_BATCH, max_size=PER_BATCH))
    def send(batch: list[bytes | None]) -> None:
        for n, raw in enumerate(batch):
            # Keys: mostly none, some not UTF-8; a tombstone (no value) needs one.
            key = b"\xff\xfe" if n % 7 == 0 or raw is None else None
            futures.append((producer.send(settings_.events_topic, key=key, value=raw), raw))
            if n % 10 == 0:  # a valid event among them
                valid = json.dumps({"event_id": f"{tag}-v{len(futures)}", "event_type": "view",
                                    "session_id": f"{tag}-s{n % 5}", "item_id": f"i{n + 1}", "ts": 1_700_000_000_000})
                futures.append((producer.send(settings_.events_topic, key=f"{tag}-s{n % 5}".encode(),
                                              value=valid.encode()), valid.encode()))

    send()
    for n in range(5):  # over 1 MB: rare in any strategy, so sent on purpose
        big = json.dumps({"event_id": tag, "n": n, "x": "y" * 1_100_000}).encode()
        futures.append((producer.send(settings_.events_topic, value=big), big))
    producer.flush()

    def fate(raw: bytes | None) -> tuple[str | None, str | None]:
        """(DLQ reason, None) or (None, event id), by the contract's parser. Run here, not inside
        hypothesis, which raises the recursion limit and so would accept deeper JSON than the worker."""
        try:
            return None, parse_event(raw or b"", settings_.max_event_bytes).event_id
        except InvalidEvent as exc:
            return exc.reason, None

    where = [(f.get(), *fate(raw)) for f, raw in futures]
    bad = {(m.partition, m.offset): reason for m, reason, _ in where if reason is not None}
    good = {event_id for _, reason, event_id in where if reason is None}
    assert len(bad) >= BATCHES * PER_BATCH * 0.9, "the generator should mostly make invalid messages"

    recs, letters = collect(tag, want_recs=len(good), want_dlq=len(bad), deadline_s=600,
                            dlq_match=lambda d: (d["partition"], d["offset"]) in bad, match_recs=good.__contains__)
    assert set(recs) == good
    assert {(d["partition"], d["offset"]): d["reason"] for d in letters} == bad
    assert worker_metric("reco_agent_crashes_total") == 0
    assert (settings_.run_dir / "pids" / "worker.process.pid").read_text() == pid_before
