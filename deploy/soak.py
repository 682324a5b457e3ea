"""`make soak MINUTES=N`: a chaos soak. The outside client (tools/bench_client.py) sends valid
events at a steady rate for N minutes while faults are injected at random, seeded and logged;
then the run must show:

* every valid event recommended at least once;
* every duplicate explained: it arrived after a fault that makes a worker process events again
  (a worker or broker kill), at most what the worker published in the flush and commit interval
  before that fault, plus the batches in flight (README, Guarantees);
* every session, item and user in Feast exactly what the events imply, erased sessions gone;
* every malformed message dead-lettered with its reason;
* the worker's resident memory and the consumer lag over time: a PNG and their slopes.

    .venv/bin/python deploy/soak.py --minutes 60 [--rate 500] [--seed 0] [--mean-gap 60] [--out .run/soak]

The faults, drawn from a shuffled bag so that each kind comes once before any comes twice:
worker SIGKILL (its supervisor forks it again), a broker SIGKILLed and started again, Triton
stopped for 10 s, a slow Triton (its server process stopped with SIGSTOP for 2 s, so calls answer
2 s late), Redis SIGKILLed and started again (its append-only file keeps the state), a burst of 100 malformed
messages, and an erasure request for a session Feast holds complete. Needs `make up`; exits 1 when a
check fails. Writes soak.json, faults.jsonl and soak.png under --out.
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402

from contract.settings import Settings, get_settings  # noqa: E402
from features.audit import feast_settled  # noqa: E402
from features.store import make_store  # noqa: E402
from tools.bench_client import make_event  # noqa: E402

SESSIONS, ITEMS, SESSION_LIFE = 200, 2000, 20  # the client's: 200 live sessions of 20 events each
DUPLICATING = ("worker_kill", "broker_kill")  # faults after which a worker may process events again


class Stack:
    """The running stack's services, by deploy/up.sh's pid files."""

    def __init__(self, settings: Settings):
        self.settings, self.pids = settings, settings.run_dir / "pids"

    def pid(self, name: str) -> int:
        return int((self.pids / f"{name}.pid").read_text())

    def script(self, action: str, *services: str) -> None:
        subprocess.run(["bash", f"deploy/{action}.sh", *services], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def dead(self) -> list[str]:
        """Services of the stack whose process is gone (not one the soak stops on purpose)."""
        names = [p.stem for p in self.pids.glob("*.pid") if not p.stem.endswith(".process")]
        return [name for name in names if not Path(f"/proc/{self.pid(name)}").exists()]

    def worker_rss_mb(self) -> float:
        """Resident memory of the worker process (not its supervisor)."""
        for line in Path(f"/proc/{self.pid('worker.process')}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise ValueError("no VmRSS")


class Faults:
    """Each fault returns what it did (None: not possible yet); the soak logs it with its start and end."""

    def __init__(self, stack: Stack, tag: str, rate: float, started: float, rng: random.Random):
        self.stack, self.tag, self.rate, self.started, self.rng = stack, tag, rate, started, rng
        settings = stack.settings
        self.producer = KafkaProducer(**settings.kafka_client_options("producer"), acks="all")
        self.malformed: dict[tuple[int, int], str] = {}  # (partition, offset) -> the DLQ reason it must get
        self.erased: list[str] = []
        self.store = make_store(settings)

    def worker_kill(self) -> str:
        os.kill(self.stack.pid("worker.process"), signal.SIGKILL)
        return "worker process SIGKILLed"

    def broker_kill(self) -> str:
        """With three brokers a random one (the cluster goes on), with one the only one (an outage)."""
        brokers = self.stack.settings.kafka_brokers
        name = f"kafka-{self.rng.randint(1, brokers)}" if brokers > 1 else "kafka"
        os.killpg(self.stack.pid(name), signal.SIGKILL)
        time.sleep(5)
        self.stack.script("up", name)
        return f"{name} SIGKILLed, started again 5 s later"

    def triton_stop(self) -> str:
        self.stack.script("down", "triton")
        time.sleep(10)
        self.stack.script("up", "triton")
        return "Triton stopped 10 s"

    def triton_slow(self) -> str:
        """The server process only: pausing its python backend stubs too made tritonserver
        segfault a few seconds later (twice on 2026-12-07, a boost interprocess lock_exception in
        its log), a crash of the fault's making, not the slow server it stands for."""
        server = self.stack.pid("triton")
        os.kill(server, signal.SIGSTOP)
        time.sleep(2)
        os.kill(server, signal.SIGCONT)
        return "Triton's server paused 2 s (SIGSTOP)"

    def redis_kill(self) -> str:
        os.killpg(self.stack.pid("redis"), signal.SIGKILL)
        self.stack.script("up", "redis")
        return "Redis SIGKILLed, then deploy/up.sh redis"

    def malformed_burst(self) -> str:
        valid = make_event(f"{self.tag}-bad", 0, 1, ITEMS, random.Random(0))
        kinds = [(b"{not json", "not_json"), (b'["an", "array"]', "invalid_schema"),
                 (json.dumps({**valid, "event_type": "wishlist"}).encode(), "unknown_event_type")]
        futures = []
        for n in range(100):
            value, reason = kinds[n % len(kinds)]
            futures.append((self.producer.send(self.stack.settings.events_topic,
                                               key=f"{self.tag}-bad{n}".encode(), value=value), reason))
        self.producer.flush()
        for future, reason in futures:
            sent = future.get(timeout=60)
            self.malformed[(sent.partition, sent.offset)] = reason
        return "100 malformed messages"

    def erasure(self) -> str | None:
        """A session whose every event Feast already holds: its rows must be gone at the end. (An
        erasure covers what was processed before it; events of the session still waiting in a
        backlog would write it again, docs/access-privacy.md.)"""
        slot = self.rng.randrange(SESSIONS)
        # Event n is of slot n % SESSIONS, life (n // SESSIONS + slot) // SESSION_LIFE (make_event).
        sent_by_then = (time.time() - self.started) * self.rate
        generation = int(((sent_by_then - slot) / SESSIONS + slot + 1) // SESSION_LIFE) - 1
        session = f"{self.tag}-s{slot}-{generation}"
        while generation >= 0 and self.events_held(session) < SESSION_LIFE:
            generation -= 1  # not processed yet (a backlog): an older one
            session = f"{self.tag}-s{slot}-{generation}"
        if generation < 0:
            return None  # too early: no session is complete in Feast yet
        subprocess.run([sys.executable, "-m", "features.erase", "--session", session], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.erased.append(session)
        return f"session {session} erased"

    def events_held(self, session: str) -> int:
        rows = self.store.get_online_features(features=["session_state:event_count"],
                                              entity_rows=[{"session_id": session}]).to_dict()
        return rows["event_count"][0] or 0

    def bag(self) -> list[Callable[[], str | None]]:
        kinds = [self.worker_kill, self.broker_kill, self.triton_stop, self.triton_slow, self.redis_kill,
                 self.malformed_burst, self.erasure]
        self.rng.shuffle(kinds)
        return kinds


def inject_faults(faults: Faults, until: float, mean_gap: float, log_file: Path, log: list[dict]) -> None:
    bag: list[Callable[[], str | None]] = []
    while True:
        gap = min(3 * mean_gap, max(5.0, faults.rng.expovariate(1 / mean_gap)))
        if time.time() + gap >= until:
            return
        time.sleep(gap)
        for name in faults.stack.dead():  # as an orchestrator would: logged, then started again
            faults.stack.script("up", name)
            record(log, log_file, {"fault": "found_dead", "start": round(time.time(), 3), "end": round(time.time(), 3),
                                   "did": f"{name} was not running: deploy/up.sh {name}", "error": None})
        bag = bag or faults.bag()
        fault = bag.pop()
        start = time.time()
        try:
            what, error = fault(), None
        except Exception as exc:  # logged and counted as a failed check; the soak goes on
            what, error = "", repr(exc)
        if what is None:  # not possible yet: it comes after the rest of the bag
            bag.insert(0, fault)
            continue
        record(log, log_file, {"fault": fault.__name__, "start": round(start, 3), "end": round(time.time(), 3),
                               "did": what, "error": error})


def record(log: list[dict], log_file: Path, entry: dict) -> None:
    log.append(entry)
    with log_file.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    print(json.dumps(entry), flush=True)


def sample_memory(stack: Stack, stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    while not stop.wait(5.0):
        try:
            samples.append((time.time(), stack.worker_rss_mb()))
        except (OSError, ValueError):  # the worker is being restarted
            continue


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of value against time, per hour."""
    if len(points) < 3:
        return None
    import numpy as np

    t, v = np.array(points).T
    return float(np.polyfit(t - t[0], v, 1)[0] * 3600)


def longest_run_without(points: list[tuple[float, float]], breaks: list[float]) -> list[tuple[float, float]]:
    """The longest stretch of samples with no break (a worker restart) inside it."""
    edges = [float("-inf"), *sorted(breaks), float("inf")]
    runs = [[p for p in points if lo < p[0] < hi] for lo, hi in zip(edges, edges[1:])]
    return max(runs, key=len)


def dead_letters(settings: Settings, start: dict[TopicPartition, int]) -> dict[tuple[int, int], str]:
    """The DLQ records written since ``start``: the (partition, offset) on events -> reason."""
    consumer = KafkaConsumer(**settings.kafka_client_options("reader"), enable_auto_commit=False)
    consumer.assign(list(start))
    for tp, offset in start.items():
        consumer.seek(tp, offset)
    ends = consumer.end_offsets(list(start))
    got: dict[tuple[int, int], str] = {}
    while any(consumer.position(tp) < ends[tp] for tp in start):
        for batch in consumer.poll(timeout_ms=1000).values():
            for message in batch:
                letter = json.loads(message.value)
                got[(letter["partition"], letter["offset"])] = letter["reason"]
    consumer.close()
    return got


def dlq_ends(settings: Settings) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(**settings.kafka_client_options("reader"))
    partitions = [TopicPartition(settings.dlq_topic, p) for p in consumer.partitions_for_topic(settings.dlq_topic)]
    ends = consumer.end_offsets(partitions)
    consumer.close()
    return ends


def explain_duplicates(duplicates: list[float], log: list[dict], bound: Callable[[float], int],
                       window_s: float = 120) -> tuple[dict[str, tuple[float, int]], list[str]]:
    """Each duplicate belongs to the last worker or broker kill begun before it arrived, at most
    ``window_s`` after that fault ended (the backlog it left drains meanwhile). Returns each such
    fault's start and count by name, and the unexplained duplicates and faults with more than
    ``bound(fault start)``."""
    problems: list[str] = []
    per_fault: dict[float, int] = {}  # by the fault's start
    for arrival in duplicates:
        causes = [f for f in log if f["fault"] in DUPLICATING and f["start"] <= arrival <= f["end"] + window_s]
        if not causes:
            problems.append(f"duplicate at {arrival:.1f} with no worker or broker kill before it")
            continue
        per_fault[causes[-1]["start"]] = per_fault.get(causes[-1]["start"], 0) + 1
    problems += [f"{n} duplicates after the fault at {start:.1f}, more than {bound(start)}"
                 for start, n in per_fault.items() if n > bound(start)]
    names = {f["start"]: f"{f['fault']} at {f['start']:.1f}" for f in log}
    return {names[start]: (start, n) for start, n in per_fault.items()}, problems


def plot(path: Path, memory: list[tuple[float, float]], lag: list[tuple[float, float]], started: float,
         log: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot([(t - started) / 60 for t, _ in memory], [m for _, m in memory], lw=1)
    top.set_ylabel("worker RSS, MB")
    bottom.plot([(t - started) / 60 for t, _ in lag], [n for _, n in lag], lw=1)
    bottom.set_ylabel("consumer lag, events")
    bottom.set_xlabel("minutes")
    for entry in log:
        for axis in (top, bottom):
            axis.axvline((entry["start"] - started) / 60, color="grey", lw=0.5, alpha=0.5)
    top.set_title("Chaos soak: worker memory and lag (grey lines: faults)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = get_settings()
    stack = Stack(settings)
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = args.out / "faults.jsonl"
    log_file.write_text("")
    tag = f"soak{args.seed}x{int(time.time())}"
    dlq_start = dlq_ends(settings)
    seconds = args.minutes * 60
    client = subprocess.Popen(
        [sys.executable, "-m", "tools.bench_client", "--rate", str(args.rate), "--seconds", str(seconds),
         "--sessions", str(SESSIONS), "--items", str(ITEMS), "--session-life", str(SESSION_LIFE),
         "--seed", str(args.seed), "--tag", tag, "--own-items", "--arrivals", "--idle-timeout", "120",
         "--client", args.client],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    started = time.time()
    memory: list[tuple[float, float]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(stack, stop, memory), daemon=True)
    sampler.start()
    faults = Faults(stack, tag, args.rate, started, random.Random(args.seed))
    log: list[dict] = []
    # No fault in the first 10 s (the client connects) or the last 20 s (so the last fault's
    # recovery is inside the run).
    try:
        time.sleep(10)
        inject_faults(faults, started + seconds - 20, args.mean_gap, log_file, log)
        out, _ = client.communicate(timeout=seconds + 900)
    finally:
        if client.poll() is None:  # the soak stopped early (an error, SIGTERM): its load stops too
            client.kill()
    stop.set()
    sampler.join()
    result = json.loads(out)

    rng = random.Random(args.seed)
    events = [make_event(tag, n, SESSIONS, ITEMS, rng, SESSION_LIFE, f"{tag}-i") for n in range(result["sent"])]
    erased = set(faults.erased)
    kept = [e for e in events if e["session_id"] not in erased]
    sessions = sorted({e["session_id"] for e in kept})
    items, users = sorted({e["item_id"] for e in events}), sorted({e["user_id"] for e in events})
    # Erased sessions must be empty rows; every other row exact (item and user counters count all events).
    feast_wrong = feast_settled(settings, kept, sessions + sorted(erased), [], timeout_s=120)
    feast_wrong += feast_settled(settings, events, [], items, users, timeout_s=60)
    letters = dead_letters(settings, dlq_start)
    dlq_wrong = [f"{where}: {letters.get(where)} != {reason}" for where, reason in faults.malformed.items()
                 if letters.get(where) != reason]
    produced = result.pop("produced")
    uncommitted_s = settings.feature_flush_s + settings.commit_interval_s

    def bound(kill: float) -> int:
        """What a kill may repeat: the recommendations the worker published (record timestamps) in
        the flush and commit interval before it, and the batches it had in flight. With a backlog
        the worker runs faster than the offered rate, so its own output is the measure."""
        return (bisect.bisect_right(produced, kill) - bisect.bisect_left(produced, kill - uncommitted_s)
                + settings.batch_size * settings.batches_in_flight)

    duplicates_per_fault, duplicate_problems = explain_duplicates(result.pop("duplicate_arrivals"), log, bound)
    restarts = [f["start"] for f in log if f["fault"] == "worker_kill"]
    steady = longest_run_without(memory, restarts)
    lag = [(t, float(n)) for t, n in result.pop("lag_samples") or []]
    plot(args.out / "soak.png", memory, lag, started, log)
    result.pop("arrivals")
    summary = {
        "minutes": args.minutes, "rate": args.rate, "seed": args.seed, "tag": tag,
        "client": {k: result[k] for k in ("sent", "received", "lost", "duplicated", "fallbacks",
                                          "fallback_reasons", "p50_ms", "p99_ms", "max_gap_s")},
        "faults": {kind: sum(f["fault"] == kind for f in log) for kind in sorted({f["fault"] for f in log})},
        "fault_errors": [f for f in log if f["error"]],
        "duplicates_per_fault": {name: [n, bound(start)] for name, (start, n) in duplicates_per_fault.items()},
        "unexplained_duplicates": duplicate_problems[:20],
        "feast_mismatches": len(feast_wrong), "feast_examples": feast_wrong[:5],
        "sessions_checked": len(sessions), "items_checked": len(items), "users_checked": len(users),
        "erased_sessions": len(erased),
        "malformed_sent": len(faults.malformed),
        "malformed_dead_lettered_right": len(faults.malformed) - len(dlq_wrong),
        "worker_rss_mb_first_last": [round(memory[0][1], 1), round(memory[-1][1], 1)] if memory else None,
        "worker_rss_mb_per_hour": slope_per_hour(steady),
        "worker_rss_steady_minutes": round((steady[-1][0] - steady[0][0]) / 60, 1) if len(steady) > 1 else 0,
        "lag_max": max((n for _, n in lag), default=None),
        "lag_per_hour": slope_per_hour(lag),
    }
    summary["passed"] = (result["lost"] == 0 and not duplicate_problems and not feast_wrong and not dlq_wrong
                         and not summary["fault_errors"])
    (args.out / "soak.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=float, default=500, help="events per second (about half the drain rate)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mean-gap", type=float, default=60, help="mean seconds between faults")
    parser.add_argument("--client", choices=["confluent", "kafka"], default="confluent",
                        help="the outside client's Kafka library (librdkafka takes the least CPU)")
    parser.add_argument("--out", type=Path, default=ROOT / ".run" / "soak")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run's cleanup runs on `kill` too
    summary = run(parser.parse_args())
    print(json.dumps(summary))
    sys.exit(0 if summary["passed"] else 1)


if __name__ == "__main__":
    main()
