"""Every Grafana panel query and every alert signal, run against the live Prometheus of
`make up` right after load went through the worker: each must parse and return data.

Needs (see tests/conftest.py):
  * Prometheus at $RECO_PROMETHEUS_URL (default http://127.0.0.1:<Settings.prometheus_port>)
    started with deploy/prometheus/prometheus.yml, scraping the worker and Triton;
  * the module-scoped fixture ``live_load``, which has just pushed a few hundred events
    through the worker (including some invalid ones, so the DLQ counter has a series).

Alert expressions are normally false (empty result), so for alerts the test queries the
signal of every clause instead: the left side of `<signal> <cmp> <threshold>` (the
convention documented in deploy/prometheus/alerts.yml).
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from _promql import alert_expressions, alert_signals, dashboard_queries

pytestmark = pytest.mark.stack

WAIT_S = float(os.environ.get("RECO_OBSERVABILITY_WAIT_S", "60"))
POLL_S = 2.0

PANEL_QUERIES = dashboard_queries()
ALERT_SIGNALS = [(name, sig) for name, expr in alert_expressions() for sig in alert_signals(expr)]
ALERTS = alert_expressions()


def _prometheus_url() -> str:
    url = os.environ.get("RECO_PROMETHEUS_URL")
    if url:
        return url.rstrip("/")
    from contract.settings import get_settings

    return f"http://127.0.0.1:{get_settings().prometheus_port}"


def _api(base: str, path: str, params: dict | None = None) -> dict:
    """GET (no params) or form-POST to the Prometheus HTTP API; returns the JSON body."""
    data = urllib.parse.urlencode(params).encode() if params is not None else None
    req = urllib.request.Request(base + path, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:  # bad_data etc. come back as 400/422 with a JSON body
        return json.loads(exc.read() or b"{}")


def query(base: str, expr: str) -> dict:
    return _api(base, "/api/v1/query", {"query": expr})


class Live:
    def __init__(self, base: str, deadline: float):
        self.base = base
        self.deadline = deadline

    def query_until_data(self, expr: str) -> list:
        """Instant query, retried until it returns data or the shared deadline passes.
        A parse/execution error fails at once."""
        while True:
            body = query(self.base, expr)
            assert body.get("status") == "success", (
                f"query failed: {expr!r}: {body.get('errorType')}: {body.get('error')}")
            result = body["data"]["result"]
            if body["data"]["resultType"] == "scalar" or result or time.monotonic() > self.deadline:
                return result
            time.sleep(POLL_S)


@pytest.fixture(scope="module")
def prometheus(live_load) -> Live:
    """Wait (bounded) until Prometheus is reachable, both targets are up and the worker's
    consumed counter has been scraped after the load."""
    base = _prometheus_url()
    start = time.monotonic()
    deadline = start + WAIT_S
    last = "nothing yet"
    while time.monotonic() < deadline:
        try:
            worker = query(base, 'up{job="worker"} == 1')["data"]["result"]
            triton = query(base, 'up{job="triton"} == 1')["data"]["result"]
            consumed = query(base, "sum(reco_events_consumed_total) > 0")["data"]["result"]
        except (urllib.error.URLError, OSError, KeyError) as exc:
            last = f"Prometheus not answering at {base}: {exc}"
        else:
            if worker and triton and consumed:
                # one more scrape + rule evaluation interval so rate() windows hold >= 2 samples
                time.sleep(6)
                return Live(base, start + WAIT_S + 30)
            last = f"worker up: {bool(worker)}, triton up: {bool(triton)}, events scraped: {bool(consumed)}"
        time.sleep(POLL_S)
    pytest.fail(f"Prometheus at {base} not ready after {WAIT_S:.0f}s ({last}); is the stack up (`make up`)?")


def test_targets_healthy(prometheus: Live):
    body = _api(prometheus.base, "/api/v1/targets?state=active")
    assert body.get("status") == "success", body
    health = {t["labels"]["job"]: (t["health"], t.get("lastError")) for t in body["data"]["activeTargets"]}
    assert health.get("worker", ("missing",))[0] == "up", health
    assert health.get("triton", ("missing",))[0] == "up", health


def test_alert_rules_loaded(prometheus: Live):
    deadline = time.monotonic() + 20
    while True:
        body = _api(prometheus.base, "/api/v1/rules?type=alert")
        assert body.get("status") == "success", body
        rules = {r["name"]: r for g in body["data"]["groups"] for r in g["rules"]}
        missing = {name for name, _ in ALERTS} - rules.keys()
        assert not missing, f"alert rules not loaded by Prometheus: {sorted(missing)}"
        unhealthy = {n: (r.get("health"), r.get("lastError")) for n, r in rules.items() if r.get("health") != "ok"}
        if not unhealthy or time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    assert not unhealthy, f"alert rules not evaluating cleanly: {unhealthy}"


@pytest.mark.parametrize(
    "dashboard,title,expr", PANEL_QUERIES,
    ids=[f"{d}:{t}:{i}" for i, (d, t, _) in enumerate(PANEL_QUERIES)],
)
def test_panel_query_returns_data(prometheus: Live, dashboard: str, title: str, expr: str):
    result = prometheus.query_until_data(expr)
    assert result, f"dashboard {dashboard!r}, panel {title!r}: no data for {expr!r}"


@pytest.mark.parametrize(
    "alert,signal", ALERT_SIGNALS,
    ids=[f"{a}:{i}" for i, (a, _) in enumerate(ALERT_SIGNALS)],
)
def test_alert_signal_returns_data(prometheus: Live, alert: str, signal: str):
    result = prometheus.query_until_data(signal)
    assert result, f"alert {alert}: signal {signal!r} returns no data"


@pytest.mark.parametrize("alert,expr", ALERTS, ids=[a for a, _ in ALERTS])
def test_alert_expression_evaluates(prometheus: Live, alert: str, expr: str):
    body = query(prometheus.base, expr)
    assert body.get("status") == "success", f"alert {alert}: {body.get('errorType')}: {body.get('error')}"
