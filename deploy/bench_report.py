"""Turns the JSON lines of one `make bench` run into a table, the ratios to the two floors and a
PNG of latency against load.

    .venv/bin/python deploy/bench_report.py reports/bench.jsonl --png reports/bench-latency.png

Input lines: bench_client.py runs (``mode`` recommendations or echo, with a ``store`` added by
bench.sh), serving.online.bench_compute lines (``method``, ``batch_size``, ``events_per_s``) and
deploy/drain.py's (``mode`` drain).
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path


def fmt(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(runs: list[dict]) -> str:
    procs = sorted({p for r in runs for p in r.get("cpu_s", {})})
    head = ["store", "offered/s", "achieved/s", "p50 ms", "p95 ms", "p99 ms", "lost", "dup", "lag max", "lag end"]
    head += [f"CPU s {p}" for p in procs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        row = [r.get("store", "-"), str(r["offered_per_s"]), fmt(r["achieved_per_s"]), fmt(r["p50_ms"]),
               fmt(r["p95_ms"]), fmt(r["p99_ms"]), str(r["lost"]), str(r["duplicated"]),
               fmt(r.get("lag_max")), fmt(r.get("lag_last"))]
        row += [fmt(r.get("cpu_s", {}).get(p), 1) for p in procs]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jsonl", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    lines = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line.startswith("{")]
    runs = [r for r in lines if r.get("mode") == "recommendations"]
    echo = [r for r in lines if r.get("mode") == "echo"]
    compute = [r for r in lines if "method" in r]
    drains = [r for r in lines if r.get("mode") == "drain"]

    print(f"machine: {platform.node()} {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores")
    print(table(runs))
    transport_p50 = echo[0]["p50_ms"] if echo else None
    if echo:
        print(f"\ntransport floor (Kafka produce->consume on loopback at {echo[0]['offered_per_s']}/s): "
              f"p50 {fmt(echo[0]['p50_ms'], 1)} ms, p99 {fmt(echo[0]['p99_ms'], 1)} ms")
    best_compute = max((c["events_per_s"] for c in compute if c.get("method") != "none"), default=None)
    if compute:
        for c in compute:
            print(f"compute floor: {c['method']:>7} batch {c['batch_size']:>3}, "
                  f"mean length {c.get('mean_length', '?')}: {fmt(c['events_per_s'])} events/s, "
                  f"{1000 / c['events_per_s']:.2f} ms CPU per event")
    for store in sorted({r.get("store", "-") for r in runs}):
        mine = [r for r in runs if r.get("store", "-") == store and r["achieved_per_s"]]
        if not mine:
            continue
        capacity = max(r["achieved_per_s"] for r in mine)
        parts = [f"{store}: capacity {fmt(capacity)} events/s"]
        if best_compute:
            parts.append(f"{capacity / best_compute:.2f} of the compute floor ({fmt(best_compute)}/s)")
        if transport_p50 is not None:
            low = min(mine, key=lambda r: r["offered_per_s"] if isinstance(r["offered_per_s"], (int, float)) else 1e9)
            above = fmt(low["p50_ms"] - transport_p50)
            parts.append(f"p50 at {low['offered_per_s']}/s minus transport p50: {above} ms")
        print("; ".join(parts))
    for d in drains:
        print(f"drain ({d.get('sessions', 'sessions as long as the run')}): {d['events']:,} events written "
              f"while the worker was stopped, drained at {fmt(d['drain_per_s'])}/s (the recommendations' "
              f"record timestamps, middle {100 * d['middle']:.0f}%); first {fmt(d['first_after_start_s'], 1)} s, "
              f"last {fmt(d['last_after_start_s'], 1)} s after the worker's start; lost {d['lost']}, "
              f"duplicated {d['duplicated']}, fallbacks {d['fallbacks']} (client: {d['client']})")
        print("  CPU ms per event (start-up included): " + ", ".join(
            f"{name} {1000 * seconds / d['events']:.2f}" for name, seconds in sorted(d.get("cpu_s", {}).items())))

    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for store in sorted({r.get("store", "-") for r in runs}):
            steady = sorted((r for r in runs if r.get("store", "-") == store
                             and isinstance(r["offered_per_s"], (int, float))), key=lambda r: r["offered_per_s"])
            for key, style in (("p50_ms", "-o"), ("p99_ms", "--s")):
                ax.plot([r["offered_per_s"] for r in steady], [r[key] for r in steady], style,
                        label=f"{store} {key[:3]}")
        ax.set(xscale="log", yscale="log", xlabel="offered events/s", ylabel="event -> recommendation (ms)",
               title="Latency against load (outside client, one clock)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=110)
        print(f"\nplot: {args.png}")


if __name__ == "__main__":
    main()
