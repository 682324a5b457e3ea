"""Nothing is lost on the real stack: a Redis outage under load, a flood of malformed input, and
Kafka's faults: a broker killed and a rolling restart of the three (``make test`` runs the stack
with KAFKA_BROKERS=3), and every broker stopped at once.

Needs `make up` with RECO_ONLINE_STORE=redis (``make test`` does both). The tests stop and start
the stack's own services with deploy/down.sh and deploy/up.sh.
"""
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest
from kafka import KafkaProducer

from contract.settings import DURABLE_PRODUCER, get_settings
from features.audit import feast_settled

pytestmark = pytest.mark.stack


def valid_event(tag: str, n: int, sessions: int) -> dict:
    kinds = ["view", "view", "click", "add_to_cart", "view", "purchase"]
    return {"event_id": f"{tag}-e{n}", "event_type": kinds[n % len(kinds)], "session_id": f"{tag}-s{n % sessions}",
            "user_id": f"{tag}-u{n % 7}", "item_id": f"i{(n * 37) % 300 + 1}", "ts": int(time.time() * 1000),
            "price": 3.5, "category_id": "c1"}


def producer(settings) -> KafkaProducer:
    return KafkaProducer(**settings.kafka_client_options("producer"), **DURABLE_PRODUCER, linger_ms=5,
                         max_request_size=settings.max_message_bytes - 1024)


def test_redis_outage_under_steady_load_loses_no_event_and_counts_end_exact(collect, worker_metric):
    """100 events/s for 25 s; Redis is stopped 4 s in and started again 10 s later. Half the events
    belong to 50 sessions the worker holds, half to sessions that start all the time (10 events
    each), which the worker cannot read while Redis is down: those are recommended from the event
    alone, flagged features_unavailable, and folded once Redis is back. Every session and item row
    then ends exactly as the events imply (the run's own items, so other tests' counts do not mix in)."""
    settings = get_settings()
    tag = f"redis{uuid.uuid4().hex[:6]}"
    events = [dict(valid_event(tag, n, sessions=50), item_id=f"{tag}-i{n % 40}",
                   session_id=f"{tag}-s{n % 50}" if n % 2 == 0 else f"{tag}-new{n // 20}") for n in range(2500)]
    def failures() -> float:  # reads retried with the batch, and background writes that failed
        return worker_metric("reco_batch_retries_total") + worker_metric("reco_feature_write_failures_total")

    failures_before = failures()

    def outage():
        time.sleep(4)
        subprocess.run(["bash", "deploy/down.sh", "redis"], check=True)
        time.sleep(10)
        subprocess.run(["bash", "deploy/up.sh", "redis"], check=True)

    fault = threading.Thread(target=outage)
    fault.start()
    try:
        send = producer(settings)
        start = time.perf_counter()
        for n, event in enumerate(events):
            time.sleep(max(0.0, start + n / 100 - time.perf_counter()))
            send.send(settings.events_topic, key=event["session_id"].encode(), value=json.dumps(event).encode())
        send.flush()
    finally:
        fault.join()

    recs, _ = collect(tag, want_recs=len(events), want_dlq=0, deadline_s=180)
    missing = {e["event_id"] for e in events} - set(recs)
    assert not missing, f"{len(missing)} of {len(events)} events got no recommendation"
    # Deferred events keep their provisional recommendation: folding them later publishes nothing.
    assert not recs.duplicated(), f"published more than once: {list(recs.duplicated().items())[:5]}"
    assert failures() > failures_before, "the outage was never felt"
    assert worker_metric("reco_agent_crashes_total") == 0
    flagged = {r["session_id"] for r in recs.values() if r["fallback"] == "features_unavailable"}
    assert flagged and all("-new" in s for s in flagged), "only sessions the worker did not hold are flagged"

    sessions = sorted({e["session_id"] for e in events})
    items = sorted({e["item_id"] for e in events})
    wrong = feast_settled(get_settings(), events, sessions, items)
    assert not wrong, f"{len(wrong)} rows differ, e.g. {wrong[:3]}"


def malformed(tag: str, n: int) -> tuple[bytes | None, str]:
    """One malformed message of kind n % 20, and the DLQ reason it must get."""
    e = valid_event(tag, n, sessions=50)
    body = json.dumps(e)
    kinds = [
        (b"[" * 5000 + b"]" * 5000, "too_deep"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "too_deep"),
        (b'{"item_id": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "too_deep"),
        (json.dumps({**e, "blob": "x" * 1_100_000}).encode(), "too_large"),
        (json.dumps({**e, "item_id": "x" * 300_000}).encode(), "invalid_schema"),
        (body.replace('"price": 3.5', '"price": NaN').encode(), "not_json"),
        (body.replace('"price": 3.5', '"price": Infinity').encode(), "not_json"),
        (b"\xff\xfe" + body.encode() + b"\xc3\x28", "not_json"),
        (b"", "not_json"),
        (None, "not_json"),  # a tombstone: no value at all
        (b"1234", "invalid_schema"),
        (b'["an", "array"]', "invalid_schema"),
        (b'"just a string"', "invalid_schema"),
        (json.dumps({**e, "ts": -5}).encode(), "invalid_schema"),
        (json.dumps({**e, "ts": 10**17}).encode(), "invalid_schema"),
        (body.replace(str(e["ts"]), "9" * 5000).encode(), "not_json"),
        (json.dumps({**e, "session_id": 12}).encode(), "invalid_schema"),
        (body.replace('"c1"', '"\\udc80"').encode(), "invalid_schema"),
        (json.dumps({**e, "event_type": "wishlist"}).encode(), "unknown_event_type"),
        (("\x01\x02" * 1000 + tag).encode(), "not_json"),
    ]
    return kinds[n % len(kinds)]


def test_malformed_flood_gives_exact_dead_letters_and_never_crashes_the_worker(collect, worker_metric):
    """1,000 messages, 300 of them malformed in 20 ways: exactly 700 recommendations and 300 dead
    letters (matched by partition and offset), and the agent never raised."""
    settings = get_settings()
    tag = f"bad{uuid.uuid4().hex[:6]}"
    pid_before = (settings.run_dir / "pids" / "worker.process.pid").read_text()
    bad_at = set(range(0, 1000, 10)) | set(range(3, 1000, 5))  # 100 + 200 positions, disjoint
    assert len(bad_at) == 300
    send = producer(settings)
    valid, futures = [], []
    for n in range(1000):
        if n in bad_at:
            value, reason = malformed(tag, n)
            futures.append((send.send(settings.events_topic, key=f"{tag}-s{n % 50}".encode(), value=value), reason))
        else:
            event = valid_event(tag, n, sessions=50)
            valid.append(event)
            send.send(settings.events_topic, key=event["session_id"].encode(), value=json.dumps(event).encode())
    send.flush()
    expected = {(f.get().partition, f.get().offset): reason for f, reason in futures}

    recs, letters = collect(tag, want_recs=len(valid), want_dlq=len(expected), deadline_s=180,
                            dlq_match=lambda d: (d["partition"], d["offset"]) in expected)
    assert set(recs) == {e["event_id"] for e in valid}
    assert not recs.duplicated(), f"published more than once: {list(recs.duplicated().items())[:5]}"
    got = {(d["partition"], d["offset"]): d["reason"] for d in letters}
    assert got == expected, Counter((expected[k], got.get(k)) for k in expected if got.get(k) != expected[k])
    assert all(d["error"] for d in letters)
    assert worker_metric("reco_agent_crashes_total") == 0
    assert (settings.run_dir / "pids" / "worker.process.pid").read_text() == pid_before


RATE = 100  # events/s of every fault_run


def fault_run(scenario: str, *until_back: str) -> dict:
    """One `make faults` scenario (deploy/faults.py) at 100 events/s, the fault 10 s in: for 25 s,
    or with ``"--until-back", "S"`` until S seconds after the service is back; its JSON line."""
    run = subprocess.run([sys.executable, "deploy/faults.py", "--only", scenario, "--rate", str(RATE),
                          "--seconds", "600" if until_back else "25", *until_back],
                         check=True, capture_output=True, text=True, timeout=900)
    result = json.loads(run.stdout.splitlines()[0])
    print(scenario, {k: result[k] for k in ("sent", "received", "lost", "duplicated", "max_gap_s", "fallbacks",
                                            "fault_took_s", "resumed_after_back_s", "worker_resumed_after_back_s")})
    if not until_back:
        assert result["sent"] == 2500
    return result


def test_worker_killed_under_load_loses_nothing_and_duplicates_stay_within_the_uncommitted_window(worker_metric):
    """A killed worker re-processes only what it had processed but not yet acknowledged: at most a
    feature flush plus a commit interval of traffic (README, Guarantees), and one batch in flight."""
    settings = get_settings()
    result = fault_run("worker_kill")
    assert result["lost"] == 0
    bound = RATE * (settings.feature_flush_s + settings.commit_interval_s) + settings.batch_size
    assert result["duplicated"] <= bound, f"{result['duplicated']} duplicated, more than {bound:.0f}"
    assert worker_metric("reco_agent_crashes_total") == 0  # the restarted worker, read after the run


def test_broker_stopped_and_started_under_load_loses_nothing_and_resumes_within_10_s():
    """Kafka (every broker) stopped and started while the outside client sends: nothing lost, and
    both the worker and the client see recommendations again within 10 s of the brokers being healthy."""
    result = fault_run("broker_restart")
    assert result["lost"] == 0
    assert result["worker_resumed_after_back_s"] is not None and result["worker_resumed_after_back_s"] <= 10
    assert result["resumed_after_back_s"] is not None and result["resumed_after_back_s"] <= 10


# Killing the active controller, the slowest broker to lose (deploy/faults.py), paused the client
# 2.45-3.51 s on this 2-core machine, quiet or with two busy loops beside it, once the quorum elects
# and fences faster (deploy/kafka/server.properties); 3.95 and 5.29 s before that.
MAX_PAUSE_S = 5

three_brokers = pytest.mark.skipif(get_settings().kafka_brokers < 3,
                                   reason="needs three brokers (`make test` runs KAFKA_BROKERS=3)")


def cluster_fault_run(scenario: str) -> dict:
    """The scenario under load from 10 s before the fault until 10 s after the brokers are back and
    in sync; the client sees nothing of it but a pause: every event recommended once (idempotent
    producers, and a worker that was never restarted, write nothing twice), no gap over MAX_PAUSE_S."""
    result = fault_run(scenario, "--until-back", "10")  # what faults.py does for them anyway
    assert result["sent"] >= RATE * (10 + result["fault_took_s"])
    assert result["lost"] == 0 and result["duplicated"] == 0
    assert result["max_gap_s"] <= MAX_PAUSE_S
    return result


@three_brokers
def test_a_broker_killed_under_load_loses_nothing_duplicates_nothing_and_pauses_briefly():
    """The broker that is the active controller (and leads some partitions of every topic)
    SIGKILLed 10 s into the load and started 5 s later; deploy/up.sh returns once its replicas are
    back in sync."""
    cluster_fault_run("broker_kill")


@three_brokers
def test_a_rolling_restart_of_the_three_brokers_under_load_loses_nothing_and_pauses_briefly():
    """Each broker stopped and started in turn, the next only once the last is back in every ISR."""
    cluster_fault_run("rolling_restart")


def test_triton_outage_serves_fallbacks_and_returns_to_the_model(collect):
    result = fault_run("triton_outage")
    assert result["lost"] == 0 and result["fallbacks"] > 0
    # After the outage the model serves again by itself: the newest recommendations are not fallbacks.
    settings = get_settings()
    tag = f"after{uuid.uuid4().hex[:6]}"
    send = producer(settings)
    for n in range(50):
        event = valid_event(tag, n, sessions=10)
        send.send(settings.events_topic, key=event["session_id"].encode(), value=json.dumps(event).encode())
    send.flush()
    recs, _ = collect(tag, want_recs=50, want_dlq=0, deadline_s=60)
    assert len(recs) == 50 and all(r["fallback"] is None for r in recs.values())


def test_a_redis_restart_keeps_the_online_state():
    """Redis runs with an append-only file: a row written before a stop is read back after the start."""
    from features.state import OnlineState, SessionState
    from features.store import OnlineFeatures

    settings = get_settings()
    session = f"aof{uuid.uuid4().hex[:8]}"
    state = SessionState(("i1", "i2"), ("view", "click"), (), ("e1", "e2"), 2, int(time.time() * 1000))
    OnlineFeatures(settings).write(OnlineState(sessions={session: state}))
    subprocess.run(["bash", "deploy/down.sh", "redis"], check=True)
    subprocess.run(["bash", "deploy/up.sh", "redis"], check=True)
    assert OnlineFeatures(settings).read_sessions([session])[session] == state
