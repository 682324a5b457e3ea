"""Observability config checks that need no running server: promtool on the Prometheus config
and alert rules (plus the rule unit tests), the Grafana dashboards' structure, that every
metric a query reads is one the worker or Triton exports, and deploy/report.py's plotting."""
from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from _promql import (
    PROMETHEUS_DIR,
    REPO,
    alert_expressions,
    alert_rules,
    alert_signals,
    dashboard_queries,
    iter_panels,
    load_dashboards,
    metric_names,
    split_comparison,
    split_set_operators,
)

GRAFANA_DIR = REPO / "deploy" / "grafana"
DATASOURCES_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
EXPECTED_DASHBOARDS = {"overview", "model", "features"}
EXPECTED_ALERTS = {
    "RecoConsumerLagGrowing", "RecoEndToEndLatencyP99High", "RecoDLQRateHigh",
    "RecoFallbackRateHigh", "RecoTritonUnavailable", "RecoNoEventsConsumed", "RecoClickHitRateDropped",
    "RecoModelCatalogueMismatch",
}


# ------------------------------------------------------------------------------ promtool

def _promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if path is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; `make setup` installs it)")
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(args):
    proc = subprocess.run([_promtool(), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


def _prometheus_config_module():
    spec = importlib.util.spec_from_file_location("streamreco_prometheus_config",
                                                  REPO / "deploy" / "prometheus_config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prometheus_template_scrapes_workers_from_file_and_triton():
    """The template (deploy/up.sh renders it): workers from file_sd workers.json, Triton static."""
    from contract.settings import Settings

    s = Settings()
    cfg = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert cfg["global"]["scrape_interval"] == "5s"
    assert cfg["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == {"worker", "triton"}
    assert "static_configs" not in jobs["worker"]
    assert [f for sd in jobs["worker"]["file_sd_configs"] for f in sd["files"]] == ["workers.json"]
    assert [t for sc in jobs["triton"]["static_configs"] for t in sc["targets"]] == [
        f"127.0.0.1:{s.triton_metrics_port}"]


def test_rendered_prometheus_config_with_worker_targets(tmp_path):
    """What deploy/up.sh writes into the run directory: promtool accepts it with the targets file
    beside it (file_sd paths resolve against the config's directory), rules point back here."""
    mod = _prometheus_config_module()
    out = tmp_path / "run dir" / "prometheus-config"
    assert mod.main(["--out", str(out), "--worker", "worker-1=127.0.0.1:9108",
                     "--worker", "worker-2=127.0.0.1:9109"]) == 0
    cfg = yaml.safe_load((out / "prometheus.yml").read_text())
    assert cfg["rule_files"] == [str(PROMETHEUS_DIR.resolve() / "alerts.yml")]
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["worker"]["file_sd_configs"][0]["files"] == [mod.TARGETS_FILE]
    targets = json.loads((out / mod.TARGETS_FILE).read_text())
    assert targets == [{"targets": ["127.0.0.1:9108"], "labels": {"worker": "worker-1"}},
                       {"targets": ["127.0.0.1:9109"], "labels": {"worker": "worker-2"}}]
    proc = subprocess.run([_promtool(), "check", "config", "prometheus.yml"], cwd=out,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"promtool check config failed:\n{proc.stdout}\n{proc.stderr}"
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr

    # Rendering again without --worker keeps the targets; another Triton port lands in the config.
    mod.write_files(out, mod.render_config(triton_metrics_port=18002), None)
    cfg = yaml.safe_load((out / "prometheus.yml").read_text())
    triton = next(j for j in cfg["scrape_configs"] if j["job_name"] == "triton")
    assert triton["static_configs"] == [{"targets": ["127.0.0.1:18002"]}]
    assert json.loads((out / mod.TARGETS_FILE).read_text()) == targets
    assert sorted(p.name for p in out.iterdir()) == ["prometheus.yml", "workers.json"]  # no temp files left
    with pytest.raises(SystemExit):
        mod.main(["--out", str(out), "--worker", "worker-1"])


# ------------------------------------------------------------------------------ metric names

def _registry_names() -> set[str]:
    """Every sample name the worker's registry can export, from stream.metrics (a counter
    family `x` exports `x_total`, a histogram `x_bucket`/`x_sum`/`x_count`, an Info `x_info`)."""
    import prometheus_client

    import stream.metrics  # noqa: F401  (registers the collectors)

    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "info": ("_info",),
        "stateset": ("",),
        "gauge": ("",),
        "unknown": ("",),
    }
    names: set[str] = set()
    for family in prometheus_client.REGISTRY.collect():
        names.update(family.name + sfx for sfx in suffixes.get(family.type, ("",)))
    return names


def _is_known(name: str, registry: set[str]) -> bool:
    return name in registry or name.startswith("nv_") or name == "up"


def test_registry_names_cover_worker_metrics():
    names = _registry_names()
    for expected in ("reco_events_consumed_total", "reco_end_to_end_latency_seconds_bucket",
                     "reco_consumer_lag", "reco_model_info", "reco_triton_up"):
        assert expected in names
    assert "reco_events_consumed" not in names and "reco_model" not in names


def test_every_queried_metric_exists():
    registry = _registry_names()
    unknown = []
    sources = [(f"dashboard {d} / {t}", e) for d, t, e in dashboard_queries()]
    sources += [(f"alert {a}", e) for a, e in alert_expressions()]
    assert sources
    for where, expr in sources:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        unknown += [f"{where}: {n}" for n in sorted(names) if not _is_known(n, registry)]
    assert not unknown, "metrics not exported by stream/metrics.py or Triton:\n" + "\n".join(unknown)


# ------------------------------------------------------------------------------ alert rules

def test_alert_rules_are_complete():
    rules = alert_rules()
    assert {r["alert"] for r in rules} == EXPECTED_ALERTS
    for r in rules:
        assert r.get("for"), f"{r['alert']}: missing `for:`"
        assert r.get("labels", {}).get("severity") in {"critical", "warning", "info"}, r["alert"]
        ann = r.get("annotations", {})
        assert ann.get("summary") and ann.get("description"), f"{r['alert']}: summary/description"


def test_alert_expressions_follow_signal_threshold_convention():
    """Every clause is `<signal> <cmp> <threshold>` (see alerts.yml): the live test queries the
    signals, so each clause must have a comparison and a non-trivial left side."""
    for name, expr in alert_expressions():
        for clause in split_set_operators(expr):
            left, op, right = split_comparison(clause)
            assert op is not None, f"{name}: clause without a comparison: {clause!r}"
            assert metric_names(left), f"{name}: signal {left!r} reads no metric"
            assert right, f"{name}: clause {clause!r} has no threshold"


def test_alert_signals_match_the_rules():
    signals = dict(alert_expressions())
    assert alert_signals(signals["RecoTritonUnavailable"]) == ['up{job="triton"}', "reco_triton_up"]
    assert alert_signals(signals["RecoNoEventsConsumed"]) == [
        "(sum(increase(reco_events_consumed_total[5m])) or vector(0))", 'up{job="worker"}']
    assert alert_signals(signals["RecoEndToEndLatencyP99High"]) == [
        "histogram_quantile(0.99, sum by (le) (rate(reco_end_to_end_latency_seconds_bucket[5m])))"]


def test_promql_helpers():
    assert split_comparison('rate(x{a!="b", c=~"d>e"}[1m]) >= bool 3') == \
        ('rate(x{a!="b", c=~"d>e"}[1m])', ">=", "bool 3")
    assert split_set_operators("a > 1 and on (x) b < 2 unless c == 0") == ["a > 1", "b < 2", "c == 0"]
    assert split_set_operators("(a or b) > 1") == ["(a or b) > 1"]
    assert split_set_operators('x{job="android"} > 1') == ['x{job="android"} > 1']
    assert metric_names(
        'histogram_quantile(0.9, sum by (le, stage) (rate(m_bucket{stage="or"}[1m]))) / 1e6 + on(job) up offset 5m'
    ) == {"m_bucket", "up"}
    assert metric_names('{__name__="foo"}') == {"foo"}


# ------------------------------------------------------------------------------ dashboards

def _datasource_uid() -> str:
    doc = yaml.safe_load(DATASOURCES_FILE.read_text())
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus"
    return ds["uid"]


def test_grafana_provisioning_files_load():
    assert _datasource_uid()
    doc = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    assert doc["providers"][0]["type"] == "file"
    assert doc["providers"][0]["options"]["path"]


def test_dashboards_structure():
    dashboards = load_dashboards()
    assert set(dashboards) == EXPECTED_DASHBOARDS
    uid = _datasource_uid()
    uids = [d.get("uid") for d in dashboards.values()]
    assert all(uids) and len(set(uids)) == len(uids), f"dashboard uids must be set and unique: {uids}"
    for name, dash in dashboards.items():
        assert dash.get("title"), name
        assert 36 <= dash.get("schemaVersion", 0) <= 41, f"{name}: schemaVersion"
        panels = list(iter_panels(dash))
        assert panels, name
        ids = [p.get("id") for p in panels]
        assert None not in ids and len(set(ids)) == len(ids), f"{name}: panel ids must be unique: {ids}"
        for p in panels:
            if p.get("type") == "row":
                continue
            where = f"{name} / {p.get('title')!r}"
            assert p.get("title"), f"{name}: panel {p.get('id')} has no title"
            gp = p.get("gridPos", {})
            assert {"x", "y", "w", "h"} <= gp.keys(), f"{where}: gridPos"
            assert gp["x"] + gp["w"] <= 24 and gp["w"] > 0 and gp["h"] > 0, f"{where}: gridPos {gp}"
            assert p.get("datasource", {}).get("uid") == uid, f"{where}: datasource must be uid {uid}"
            targets = p.get("targets") or []
            assert any(t.get("expr", "").strip() for t in targets), f"{where}: no target with an expr"
            refs = [t.get("refId") for t in targets]
            assert len(set(refs)) == len(refs), f"{where}: duplicate refIds"
            for t in targets:
                assert t.get("datasource", {}).get("uid", uid) == uid, f"{where}: target datasource"


def test_dashboard_panels_do_not_overlap():
    for name, dash in load_dashboards().items():
        cells: dict[tuple[int, int], str] = {}
        for p in iter_panels(dash):
            gp = p["gridPos"]
            for x in range(gp["x"], gp["x"] + gp["w"]):
                for y in range(gp["y"], gp["y"] + gp["h"]):
                    assert (x, y) not in cells, f"{name}: {p['title']!r} overlaps {cells[(x, y)]!r}"
                    cells[(x, y)] = p["title"]


def test_dashboards_cover_required_signals():
    text = {name: " ".join(e for d, _, e in dashboard_queries() if d == name) for name in EXPECTED_DASHBOARDS}
    for needle in ("reco_events_consumed_total", "reco_recommendations_published_total",
                   "reco_end_to_end_latency_seconds_bucket", "reco_consumer_lag",
                   "reco_events_invalid_total", "reco_fallbacks_total"):
        assert needle in text["overview"], needle
    for needle in ("nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                   "nv_inference_compute_infer_duration_us", "nv_inference_count", "nv_inference_exec_count",
                   "nv_inference_request_success", "nv_inference_request_failure", "reco_model_info",
                   'stage="rank"'):
        assert needle in text["model"], needle
    for needle in ('stage="write_state"', 'stage="read_state"', "reco_batch_size"):
        assert needle in text["features"], needle


def test_panel_windows_are_short():
    """Panels use 1m rate windows so they show data ~10 s after load starts (5 s scrapes)."""
    import re

    for d, t, e in dashboard_queries():
        for w in re.findall(r"\[([^\]]+)\]", e):
            assert w == "1m", f"{d} / {t}: window [{w}] in {e!r}"


# ------------------------------------------------------------------------------ report

def _report_module():
    spec = importlib.util.spec_from_file_location("streamreco_report", REPO / "deploy" / "report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_report_plot_series_writes_png(tmp_path):
    report = _report_module()
    t0 = 1_700_000_000.0
    series = {
        "events/s": [(t0 + 5 * i, 100 + 10 * math.sin(i / 5)) for i in range(120)],
        "p99": [(t0 + 5 * i, float("nan") if i % 17 == 0 else 0.2 + i / 1000) for i in range(120)],
        "empty": [],
    }
    out = report.plot_series(series, tmp_path / "sub" / "x.png", "title", "unit", hline=250, hline_label="objective")
    data = out.read_bytes()
    assert out == tmp_path / "sub" / "x.png" and len(data) > 1000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    empty = report.plot_series({}, tmp_path / "empty.png", "nothing", "unit")
    assert empty.stat().st_size > 0


def test_report_summarize_and_unreachable_server(tmp_path, capsys):
    report = _report_module()
    s = report.summarize({"a": [(0, 1.0), (5, 3.0), (10, float("nan"))], "b": []})
    assert s["a"] == {"mean": 2.0, "max": 3.0, "last": 3.0, "points": 3}
    assert s["b"]["mean"] is None
    rc = report.main(["--prometheus", "http://127.0.0.1:9", "--minutes", "1", "--out", str(tmp_path)])
    assert rc == 2
    assert "cannot reach Prometheus" in capsys.readouterr().err
