"""Two workers in one consumer group on the real stack (`WORKERS=2 deploy/up.sh worker`): every
event recommended in session order, item and user counters in Feast exactly what the events imply,
and one worker killed under load with nothing lost and the counters still exact."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict

import numpy as np
import pytest
from kafka import KafkaAdminClient

from contract.messages import Event
from contract.settings import PROJECT_ROOT, get_settings
from features.audit import feast_settled
from features.privacy import pseudonym
from features.store import OnlineFeatures
from tests.stack._client import Shopper

pytestmark = pytest.mark.stack
ITEMS, USERS = 60, 40


def deploy(*args: str, workers: int) -> None:
    subprocess.run(["bash", *args], cwd=PROJECT_ROOT, env={**os.environ, "WORKERS": str(workers)}, check=True,
                   capture_output=True, timeout=300)


def group_members() -> list[str]:
    """The workers holding partitions of `events`."""
    settings = get_settings()
    admin = KafkaAdminClient(**settings.kafka_client_options("admin"))
    try:
        group = admin.describe_groups([settings.consumer_group])[settings.consumer_group]
    finally:
        admin.close()
    return [m["group_instance_id"] for m in group["members"]
            if any(a["topic"] == settings.events_topic and a["partitions"]
                   for a in (m.get("member_assignment") or {}).get("assigned_partitions", []))]


@pytest.fixture(scope="module")
def two_workers():
    deploy("deploy/up.sh", "worker", workers=2)
    deadline = time.monotonic() + 90
    while len(group_members()) < 2:
        assert time.monotonic() < deadline, "the second worker never got partitions of events"
        time.sleep(1)
    yield
    deploy("deploy/down.sh", "worker", workers=2)  # back to the one worker the other tests expect
    deploy("deploy/up.sh", "worker", workers=1)


def shop(tag: str, phase: str, sessions: int, per_session: int, seed: int) -> list[Event]:
    """Events interleaved across sessions (a session's events in order); items and users of this
    run only, so their counters start at zero."""
    rng = np.random.default_rng(seed)
    users = {s: f"{tag}-u{rng.integers(USERS)}" for s in range(sessions)}
    return [Event(event_id=f"{tag}-{phase}{s}-e{n}", event_type="purchase" if rng.random() < 0.1 else "view",
                  session_id=f"{tag}-{phase}{s}", user_id=users[s], item_id=f"{tag}-i{rng.integers(ITEMS)}",
                  ts=int(time.time() * 1000), category_id="c1")
            for n in range(per_session) for s in range(sessions)]


def send_paced(shopper: Shopper, events: list[Event], rate: float) -> None:
    start = time.perf_counter()
    for n, event in enumerate(events):
        time.sleep(max(0.0, start + n / rate - time.perf_counter()))
        shopper.send([event])


def assert_counters_exact(events: list[Event]) -> None:
    """Item interactions and purchases, user events and sessions in Feast equal what the events imply."""
    settings = get_settings()
    key = settings.pseudonym_key.get_secret_value().encode()
    items = Counter(e.item_id for e in events)
    purchases = Counter(e.item_id for e in events if e.event_type == "purchase")
    user_events = Counter(pseudonym(key, e.user_id) for e in events if e.user_id)
    user_sessions = Counter(pseudonym(key, user) for user, _ in {(e.user_id, e.session_id) for e in events
                                                                 if e.user_id})
    features = OnlineFeatures(settings)
    deadline, got_items, got_users = time.monotonic() + 30, {}, {}
    while time.monotonic() < deadline:  # the counters' write-behind runs every 0.5 s
        got_items = {i: (s.interaction_count, s.purchase_count) for i, s in features.read_items(list(items)).items()}
        got_users = {u: (s.event_count, s.session_count) for u, s in features.read_users(list(user_events)).items()}
        if got_items == {i: (items[i], purchases[i]) for i in items} and \
                got_users == {u: (user_events[u], user_sessions[u]) for u in user_events}:
            break
        time.sleep(1)
    assert got_items == {i: (items[i], purchases[i]) for i in items}
    assert got_users == {u: (user_events[u], user_sessions[u]) for u in user_events}


def test_two_workers_recommend_every_event_in_session_order_and_count_exactly(two_workers):
    tag, shopper = f"so{uuid.uuid4().hex[:8]}", Shopper()
    events = shop(tag, "a", sessions=300, per_session=10, seed=0)  # 3,000 events over 300 sessions
    try:
        send_paced(shopper, events, rate=300)
        recs = shopper.read({e.event_id for e in events}, timeout_s=120, settle_s=2)
    finally:
        shopper.close()
    assert len(recs) == len(events)
    by_session = defaultdict(list)
    for rec in shopper.arrived:
        by_session[rec["session_id"]].append(int(rec["event_id"].rsplit("-e", 1)[1]))
    out_of_order = [s for s, seen in by_session.items() if seen != sorted(seen)]
    assert not out_of_order, f"{len(out_of_order)} sessions' recommendations out of event order"
    assert len(group_members()) == 2, "both workers took part"
    assert_counters_exact(events)


def test_a_worker_killed_under_load_loses_nothing_and_the_counters_stay_exact(two_workers):
    tag, shopper = f"sk{uuid.uuid4().hex[:8]}", Shopper()
    events = shop(tag, "b", sessions=200, per_session=10, seed=1)  # 2,000 events at 200/s
    sender = threading.Thread(target=send_paced, args=(shopper, events, 200.0))
    pid = int((get_settings().run_dir / "pids" / "worker-2.pid").read_text())
    try:
        sender.start()
        time.sleep(3)
        os.kill(pid, signal.SIGKILL)  # the other worker takes its partitions after the session timeout
        sender.join()
        recs = shopper.read({e.event_id for e in events}, timeout_s=120, settle_s=5)
    finally:
        shopper.close()
    duplicated = len(shopper.arrived) - len(recs)
    print(f"worker-2 killed 3 s into {len(events)} events: {len(recs)} recommended, 0 lost, "
          f"{duplicated} duplicated ({duplicated / len(events):.1%})")
    assert len(recs) == len(events)
    assert_counters_exact(events)
    # ... and every session's sequence, though the survivor took over sessions worker-2 had folded
    sessions = sorted({e.session_id for e in events})
    wrong = feast_settled(get_settings(), [e.model_dump() for e in events], sessions, [])
    assert not wrong, f"{len(wrong)} sessions differ, e.g. {wrong[:2]}"
