"""The learning loop on the real stack: online attribution counted exactly in Prometheus, and a
retrain from the stream hot-swapped in (and rolled back) under load."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from contract.messages import Event
from contract.settings import PROJECT_ROOT, get_settings
from features.feedback import rank_bucket
from serving.offline.data import generate_synthetic
from tests.stack._client import Shopper
from tools.produce import session_events

pytestmark = pytest.mark.stack


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
    expected_recs = Counter((r["model_version"],) for step in (views, clicks, carts, misses) for r in step.values())
    deadline, got, got_recs = time.monotonic() + 30, Counter(), Counter()
    while time.monotonic() < deadline:  # Prometheus scrapes the worker every 5 s
        got = prometheus_counts("reco_attributed_events_total", attributed_by) - before
        got_recs = prometheus_counts("reco_recommendations_total", "model_version") - before_recs
        if got == expected and got_recs == expected_recs:
            break
        time.sleep(1)
    assert got == expected
    assert got_recs == expected_recs


class SteadyLoad:
    """Replays a shifted synthetic catalogue (new items, another seed) at a steady rate in one
    thread and reads every tagged recommendation back in another, in arrival order."""

    def __init__(self, tag: str, rate: float = 40.0):
        self.tag, self.rate, self.stop, self.sent_all = tag, rate, threading.Event(), threading.Event()
        self.sent_all_at = 0.0
        self.sent: list[str] = []
        self.received: list[dict] = []
        self.shopper = Shopper()
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._read, daemon=True)]

    def _send(self) -> None:
        start, round_ = time.perf_counter(), 0
        while not self.stop.is_set():
            sessions = generate_synthetic(150, n_items=2200, seed=1 + round_)
            for event in session_events(sessions, stamp_now=True, prefix=f"{self.tag}-r{round_}-"):
                if self.stop.is_set():
                    break
                time.sleep(max(0.0, start + len(self.sent) / self.rate - time.perf_counter()))
                self.shopper.producer.send(self.shopper.settings.events_topic, key=event.session_id.encode(),
                                           value=event.model_dump_json().encode())
                self.sent.append(event.event_id)
            round_ += 1
        self.shopper.producer.flush()
        self.sent_all_at = time.monotonic()
        self.sent_all.set()

    def _read(self) -> None:
        """Until every event sent has its recommendation, or 60 s after the last was sent."""
        while not (self.sent_all.is_set() and (set(self.sent) <= {r["event_id"] for r in self.received}
                                               or time.monotonic() - self.sent_all_at > 60)):
            got = [json.loads(m.value) for batch in self.shopper.consumer.poll(timeout_ms=500).values() for m in batch]
            self.received += [r for r in got if r["event_id"].startswith(self.tag)]

    def versions(self) -> list[str]:
        return [r["model_version"] for r in self.received]

    def wait_for_version(self, version: str, after: int, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while version not in self.versions()[after:]:
            assert time.monotonic() < deadline, f"version {version} never served (saw {set(self.versions())})"
            time.sleep(0.5)

    def __enter__(self) -> SteadyLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=90)
        self.shopper.close()


def run_cli(*args: str, timeout_s: float = 600) -> str:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout_s)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def published_version(retrain_output: str) -> str:
    found = re.search(r"published as version (\d+)", retrain_output)
    assert found, retrain_output
    return found.group(1)


def triton_failures() -> float:
    url = f"http://127.0.0.1:{get_settings().triton_metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) if f.name == "nv_inference_request_failure"
               for s in f.samples)


def test_retrain_from_the_stream_then_hot_swap_and_roll_back_with_no_failed_or_fallback_recommendation():
    """While a steady load runs: `serving.retrain` learns from the stream since the load began
    (a short warm start; the margin is wide so this test is about the swap, the gate has its own
    tests) and publishes a version that Triton picks up; then `serving.rollback` returns to the
    old one. Every event gets its recommendation, none is a fallback, Triton fails no request,
    and the served version changes exactly twice: old -> new -> old."""
    tag, since_ms = f"swap{uuid.uuid4().hex[:8]}", int(time.time() * 1000)
    failures_before = triton_failures()
    with SteadyLoad(tag) as load:
        time.sleep(40)  # the stream the candidate learns from
        old = load.versions()[-1]
        out = run_cli("serving.retrain", "--since", str(since_ms), "--margin", "1.0", "--min-holdout", "10",
                      "--epochs", "2")
        assert "published" in out, out
        new = f"{get_settings().model_name}:{published_version(out)}"  # as the worker labels it
        load.wait_for_version(new, after=0)
        time.sleep(5)
        switched = len(load.received)
        print(run_cli("serving.rollback"))
        load.wait_for_version(old, after=switched)
        time.sleep(5)
    recs = {r["event_id"]: r for r in load.received}
    assert set(load.sent) <= set(recs), f"{len(set(load.sent) - set(recs))} events got no recommendation"
    assert not [r for r in load.received if r["fallback"]], "fallback recommendations during the swap"
    assert triton_failures() == failures_before
    changes = [v for i, v in enumerate(load.versions()) if i == 0 or v != load.versions()[i - 1]]
    print(f"{len(load.sent)} events, {len(recs)} recommended; by version {Counter(load.versions())}; {out}")
    assert changes == [old, new, old]
