"""The measurements behind docs/capacity.md: one burst through the running stack, timed by the
outside client (tools/bench_client.py), with the CPU each service spent, the Redis commands and
Triton's inferences counted around it. Prints one JSON object.

    .venv/bin/python deploy/capacity.py [--events 10000]      # needs `make up` (any WORKERS)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from contract.settings import get_settings  # noqa: E402  (run as a script from deploy/)

TRITON_COUNTERS = ("nv_inference_count", "nv_inference_exec_count", "nv_inference_request_success",
                   "nv_inference_compute_infer_duration_us")


def redis_calls(client: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in client.info("commandstats").items()}


def triton_counters(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {f.name: sum(s.value for s in f.samples) for f in text_string_to_metric_families(text)
            if f.name in TRITON_COUNTERS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    settings = get_settings()
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port, **settings.redis_auth)
    redis_before, triton_before = redis_calls(client), triton_counters(settings.triton_metrics_port)
    run = subprocess.run([sys.executable, "-m", "tools.bench_client", "--rate", "0", "--events", str(args.events)],
                         cwd=ROOT, check=True, capture_output=True, text=True)
    burst = json.loads(run.stdout)
    redis_after, triton_after = redis_calls(client), triton_counters(settings.triton_metrics_port)

    events = burst["received"] or 1
    redis_delta = {k: v - redis_before.get(k, 0) for k, v in redis_after.items() if v > redis_before.get(k, 0)}
    triton = {k: triton_after.get(k, 0) - triton_before.get(k, 0) for k in TRITON_COUNTERS}
    busy_s = triton["nv_inference_compute_infer_duration_us"] / 1e6
    print(json.dumps({
        "events": burst["sent"], "received": burst["received"], "lost": burst["lost"],
        "duplicated": burst["duplicated"], "achieved_per_s": burst["achieved_per_s"],
        "p50_ms": burst["p50_ms"], "p99_ms": burst["p99_ms"],
        "cpu_ms_per_event": {k: round(1000 * v / events, 3) for k, v in burst["cpu_s"].items()},
        "redis_calls_per_event": {k: round(v / events, 2) for k, v in sorted(redis_delta.items())},
        "triton": {"sequences_per_event": round(triton["nv_inference_count"] / events, 3),
                   "sequences_per_execution": round(triton["nv_inference_count"]
                                                    / max(triton["nv_inference_exec_count"], 1), 1),
                   "sequences_per_busy_instance_s": round(triton["nv_inference_count"] / max(busy_s, 1e-9))},
    }))


if __name__ == "__main__":
    main()
