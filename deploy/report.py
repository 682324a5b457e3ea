"""Plot the last N minutes of the running stack from Prometheus (``make report``).

    python deploy/report.py --prometheus http://127.0.0.1:9090 --minutes 10 --out reports/

writes ``reports/throughput.png`` (events/s, recommendations/s, DLQ/s, fallbacks/s),
``reports/latency.png`` (end-to-end p50/p95/p99 against the objective, Triton server-side and
worker-side latency) and ``reports/summary.json`` (mean / max / last of every series).
Only the standard library, matplotlib (Agg) and Prometheus' HTTP API are used.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from datetime import datetime  # noqa: E402

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

Series = dict[str, list[tuple[float, float]]]  # legend label -> [(unix ts, value)]

E2E = "reco_end_to_end_latency_seconds_bucket"
THROUGHPUT_QUERIES: dict[str, str] = {
    "events consumed/s": "sum(rate(reco_events_consumed_total[1m]))",
    "recommendations/s": "sum(rate(reco_recommendations_published_total[1m]))",
    "DLQ events/s": "sum(rate(reco_events_invalid_total[1m]))",
    "fallbacks/s": "sum(rate(reco_fallbacks_total[1m]))",
}
# All latency queries are in seconds; the plot shows milliseconds.
LATENCY_QUERIES: dict[str, str] = {
    "e2e p50": f"histogram_quantile(0.5, sum by (le) (rate({E2E}[1m])))",
    "e2e p95": f"histogram_quantile(0.95, sum by (le) (rate({E2E}[1m])))",
    "e2e p99": f"histogram_quantile(0.99, sum by (le) (rate({E2E}[1m])))",
    "Triton request avg (server)": (
        "sum(rate(nv_inference_request_duration_us[1m])) / sum(rate(nv_inference_request_success[1m])) / 1e6"
    ),
    "Triton call p99 (worker)": (
        'histogram_quantile(0.99, sum by (le) (rate(reco_stage_latency_seconds_bucket{stage="rank"}[1m])))'
    ),
}


class PrometheusError(RuntimeError):
    pass


def query_range(base_url: str, expr: str, start: float, end: float, step: float, timeout: float = 10.0) -> list[dict]:
    """POST /api/v1/query_range; returns the ``result`` list (matrix)."""
    data = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step}).encode()
    url = base_url.rstrip("/") + "/api/v1/query_range"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:  # 400/422 carry a JSON error body
        body = json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError) as exc:
        raise PrometheusError(f"cannot reach Prometheus at {base_url}: {exc}") from exc
    if body.get("status") != "success":
        raise PrometheusError(f"query failed: {expr!r}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


def _label(name: str, metric: dict[str, str], many: bool) -> str:
    if not many:
        return name
    extra = ",".join(f"{k}={v}" for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name} {{{extra}}}" if extra else name


def fetch(base_url: str, queries: dict[str, str], start: float, end: float, step: float, scale: float = 1.0) -> Series:
    out: Series = {}
    for name, expr in queries.items():
        result = query_range(base_url, expr, start, end, step)
        for item in result:
            points = [(float(t), float(v) * scale) for t, v in item["values"]]
            out[_label(name, item["metric"], len(result) > 1)] = points
        if not result:
            out[name] = []
    return out


def plot_series(
    series: Series,
    path: str | Path,
    title: str,
    ylabel: str,
    hline: float | None = None,
    hline_label: str | None = None,
) -> Path:
    """Line plot of ``series`` (label -> [(unix ts, value)]) to a PNG at ``path``.
    NaN/inf points leave gaps; a series with no points is listed as "(no data)"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=100)
    plotted = 0
    for label, points in series.items():
        if not points:
            ax.plot([], [], label=f"{label} (no data)")
            continue
        xs = [datetime.fromtimestamp(t) for t, _ in points]
        ys = [v if math.isfinite(v) else float("nan") for _, v in points]
        ax.plot(xs, ys, label=label, linewidth=1.4)
        plotted += 1
    if hline is not None:
        ax.axhline(hline, color="red", linestyle="--", linewidth=1, label=hline_label or f"{hline:g}")
    if not plotted:
        ax.text(0.5, 0.5, "no data in range", transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    fig.autofmt_xdate()
    if series or hline is not None:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def summarize(series: Series) -> dict[str, dict[str, float | None]]:
    out = {}
    for label, points in series.items():
        vals = [v for _, v in points if math.isfinite(v)]
        out[label] = {
            "mean": sum(vals) / len(vals) if vals else None,
            "max": max(vals) if vals else None,
            "last": vals[-1] if vals else None,
            "points": len(points),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    p.add_argument("--minutes", type=float, default=10.0, help="how far back to plot")
    p.add_argument("--out", default="reports", help="output directory")
    p.add_argument("--step", type=float, default=None, help="resolution in seconds (default: range/300, >= 5)")
    p.add_argument("--objective-ms", type=float, default=250.0, help="end-to-end latency objective line")
    args = p.parse_args(argv)

    end = time.time()
    start = end - args.minutes * 60
    step = args.step or max(5.0, args.minutes * 60 / 300)
    out = Path(args.out)
    try:
        throughput = fetch(args.prometheus, THROUGHPUT_QUERIES, start, end, step)
        latency = fetch(args.prometheus, LATENCY_QUERIES, start, end, step, scale=1000.0)
    except PrometheusError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2

    window = f"last {args.minutes:g} min"
    files = [
        plot_series(throughput, out / "throughput.png", f"Throughput ({window})", "per second"),
        plot_series(latency, out / "latency.png", f"Latency ({window})", "milliseconds",
                    hline=args.objective_ms, hline_label=f"objective {args.objective_ms:g} ms"),
    ]
    summary = {"window_minutes": args.minutes, "step_s": step, "end": end,
               "throughput_per_s": summarize(throughput), "latency_ms": summarize(latency)}
    summary_file = out / "summary.json"
    summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    files.append(summary_file)

    for section, unit in (("throughput_per_s", "/s"), ("latency_ms", " ms")):
        for label, s in summary[section].items():
            if s["mean"] is None:
                print(f"  {label:32s} no data")
            else:
                print(f"  {label:32s} mean {s['mean']:10.2f}{unit}  max {s['max']:10.2f}{unit}")
    for f in files:
        print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
