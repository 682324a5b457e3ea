"""The drain rate for `make bench`: how fast the worker works through a backlog, with no client
pacing it and no client on the CPU meanwhile.

1. Stops the worker(s) (deploy/down.sh worker).
2. Writes ``--events`` events (default 30,000; bench_client.make_event's sessions and items) to the
   events topic with a plain producer, as fast as it can: the backlog.
3. Starts the worker(s) again (deploy/up.sh worker; WORKERS as in the environment).
4. Waits, sampling only offsets every 2 s, until the recommendations stop growing, then reads them.
5. The rate comes from the recommendations' own Kafka record timestamps (when the worker's
   producer made each), over the middle 80% of them: the worker's start-up and the last partial
   batches stay out, and no client clock or read delay is in it. Lost and duplicated are counted
   per event id, as bench_client does.

Prints one JSON line (``mode`` "drain"), which deploy/bench_report.py reads.

    .venv/bin/python deploy/drain.py --events 30000 --client confluent
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.bench_client import (  # noqa: E402
    CLIENTS,
    add_connection_arguments,
    connection,
    cpu_seconds,
    make_event,
    real_length_sessions,
    sessions_shape,
)


def middle_rate(timestamps_ms: Iterable[int], middle: float = 0.8) -> dict:
    """Records per second between the record at the ``(1 - middle) / 2`` quantile and the one at
    ``(1 + middle) / 2`` of the sorted timestamps: (number of records after the first one counted)
    / (their time span). None when fewer than two records or a zero span."""
    ts = sorted(timestamps_ms)
    n = len(ts)
    if n < 2:
        return {"per_s": None, "span_s": None, "counted": n}
    cut = int(n * (1 - middle) / 2 + 1e-9)  # 1e-9: 100 * (1 - 0.8) / 2 is 9.999... in floats
    lo, hi = cut, n - 1 - cut
    if hi <= lo:
        lo, hi = 0, n - 1
    span_s = (ts[hi] - ts[lo]) / 1000
    return {"per_s": round((hi - lo) / span_s, 1) if span_s > 0 else None, "span_s": round(span_s, 3),
            "counted": hi - lo + 1}


def account(expected: set[str], event_ids: Iterable[str]) -> dict:
    """Per expected event id: received once or more, lost (never), duplicated (copies beyond the
    first, summed); ids not expected (another run's) are ignored."""
    copies = Counter(e for e in event_ids if e in expected)
    return {"received": len(copies), "lost": len(expected) - len(copies),
            "duplicated": sum(n - 1 for n in copies.values())}


def first_copies(records: Iterable[tuple[str, int]]) -> dict[str, int]:
    """event id -> the timestamp of its first copy (the one a duplicate repeats)."""
    first: dict[str, int] = {}
    for event_id, timestamp in records:
        if event_id not in first or timestamp < first[event_id]:
            first[event_id] = timestamp
    return first


def service(action: str) -> None:
    """deploy/down.sh worker or deploy/up.sh worker (WORKERS from the environment)."""
    subprocess.run(["bash", f"deploy/{action}.sh", "worker"], cwd=ROOT, check=True)


def total_new(ends: dict[int, int], start: dict[int, int]) -> int:
    return sum(end - start.get(p, 0) for p, end in ends.items())


def run(args: argparse.Namespace) -> dict:
    client = CLIENTS[args.client](connection(args))
    tag = f"drain{uuid.uuid4().hex[:8]}"
    service("down")
    start = client.end_offsets(args.recommendations_topic)

    t0 = time.time()
    producer = client.producer(linger_ms=20)
    rng = random.Random(args.seed)
    names = real_length_sessions(args, tag)
    for n in range(args.events):
        event = make_event(tag, n, args.sessions, args.items, rng, args.session_life,
                           session_id=names(n) if names else None)
        producer.send(args.events_topic, event["session_id"].encode(), json.dumps(event).encode())
    producer.flush()
    producer.close()
    produce_s = time.time() - t0

    worker_start_ms = int(time.time() * 1000)
    service("up")
    cpu_before = cpu_seconds(args.pid_dir)
    # Wait on offsets only (a few requests every 2 s), so the client takes no CPU from the drain.
    lag = client.lag(args.group, args.events_topic)
    deadline = time.time() + args.timeout
    last, grown_at = -1, time.time()
    while time.time() < deadline:
        time.sleep(2)
        new = total_new(client.end_offsets(args.recommendations_topic), start)
        if new != last:
            last, grown_at = new, time.time()
            continue
        try:
            backlog = lag()
        except Exception:  # a sample lost: decide on the next one
            backlog = None
        if new >= args.events or backlog == 0 or time.time() - grown_at > args.idle_timeout:
            break
    cpu_after = cpu_seconds(args.pid_dir)

    ends = client.end_offsets(args.recommendations_topic)
    reader = client.reader(args.recommendations_topic, start)
    records: list[tuple[str, int]] = []
    fallbacks = 0
    read, quiet_since = 0, time.time()
    while read < total_new(ends, start) and time.time() - quiet_since < 10:
        batch = reader.poll(0.5)
        if batch:
            quiet_since = time.time()
        read += len(batch)
        for value, timestamp_ms in batch:
            payload = json.loads(value)
            event_id = payload.get("event_id")
            if isinstance(event_id, str) and event_id.startswith(f"{tag}-"):
                records.append((event_id, timestamp_ms))
                fallbacks += payload.get("fallback") is not None
    reader.close()

    expected = {f"{tag}-{n}" for n in range(args.events)}
    first = first_copies(records)
    rate = middle_rate(first.values(), args.middle)
    times = sorted(first.values())
    return {"mode": "drain", "client": args.client, "events": args.events, "sessions": sessions_shape(args),
            **account(expected, (e for e, _ in records)), "fallbacks": fallbacks, "drain_per_s": rate["per_s"],
            "middle": args.middle, "middle_span_s": rate["span_s"],
            "first_after_start_s": round((times[0] - worker_start_ms) / 1000, 2) if times else None,
            "last_after_start_s": round((times[-1] - worker_start_ms) / 1000, 2) if times else None,
            "produce_s": round(produce_s, 1),
            "cpu_s": {k: round(cpu_after.get(k, 0) - v, 2) for k, v in cpu_before.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_connection_arguments(parser)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--middle", type=float, default=0.8, help="share of the recommendations the rate is over")
    parser.add_argument("--timeout", type=float, default=900, help="give up waiting after this many seconds")
    parser.add_argument("--idle-timeout", type=float, default=60,
                        help="stop waiting when no recommendation came for this many seconds")
    args = parser.parse_args()
    if not 0 < args.middle <= 1:
        parser.error("--middle must be in (0, 1]")
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
