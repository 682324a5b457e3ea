"""`make faults`: each fault injected into the running stack while the outside client
(tools/bench_client.py) sends valid events at a steady rate; one table at the end.

    .venv/bin/python deploy/faults.py [--rate 100] [--seconds 40] [--only worker_kill,triton_outage]
    .venv/bin/python deploy/faults.py --only broker_kill,rolling_restart --seconds 600 --until-back 10

broker_kill and rolling_restart need three brokers (`make up KAFKA_BROKERS=3`, or
`make faults KAFKA_BROKERS=3`); they run by default only then, always with the load on until 10 s
after the brokers are back.

Recovery is measured on the client's clock three ways: the longest gap between two
recommendations it received; how long after the service was healthy again (deploy/up.sh returned)
the next recommendation arrived; and, for Triton, the last fallback after Triton was back (the
return to the model). Needs `make up`.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = Path(os.environ.get("RECO_RUN_DIR", ROOT / ".run"))


def sh(*command: str) -> None:
    subprocess.run(["bash", *command], cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_worker() -> None:
    """The worker's process; its supervisor (stream/supervisor.py) forks a new one at once."""
    os.kill(int((RUN / "pids" / "worker.process.pid").read_text()), signal.SIGKILL)


def kill_worker_and_supervisor() -> None:
    """The whole service (a lost host or container), started again cold by deploy/up.sh."""
    os.killpg(int((RUN / "pids" / "worker.pid").read_text()), signal.SIGKILL)
    time.sleep(0.5)
    sh("deploy/up.sh", "worker")


def active_controller() -> int:
    """The node that became the KRaft quorum's leader last, as its log says (each node is broker
    and controller)."""
    def last_election(index: int) -> str:
        lines = (RUN / "logs" / f"kafka-{index}.log").read_text(errors="replace").splitlines()
        return max((line[1:24] for line in lines if "Completed transition to Leader" in line), default="")
    return max((1, 2, 3), key=last_election)


def kill_active_controller(seconds: float) -> None:
    """SIGKILL the broker that is also the active controller, the slowest broker to lose: the
    other two elect a controller before it can fence the dead one and move the leadership of its
    partitions (with 8 partitions per topic it leads some of every topic). Started again after
    ``seconds``; up.sh returns once its replicas are all back in sync."""
    index = active_controller()
    os.kill(int((RUN / "pids" / f"kafka-{index}.pid").read_text()), signal.SIGKILL)
    time.sleep(seconds)
    sh("deploy/up.sh", f"kafka-{index}")


def rolling_restart() -> None:
    """Each broker stopped (controlled shutdown: it hands its leaderships on) and started in turn;
    the next goes only once the restarted one is back in every ISR (deploy/up.sh waits for that)."""
    for index in (1, 2, 3):
        sh("deploy/down.sh", f"kafka-{index}")
        sh("deploy/up.sh", f"kafka-{index}")


def outage(service: str, seconds: float):
    def inject() -> None:
        sh("deploy/down.sh", service)
        time.sleep(seconds)
        sh("deploy/up.sh", service)
    return inject


SCENARIOS = {
    "worker_kill": ("worker SIGKILL (its supervisor starts it again)", kill_worker),
    "worker_cold_restart": ("worker and supervisor SIGKILL, then deploy/up.sh worker", kill_worker_and_supervisor),
    "broker_restart": ("Kafka (every broker) stopped and started", outage("kafka", 0)),
    # These two need `make up KAFKA_BROKERS=3`.
    "broker_kill": ("the active controller (1 of 3 brokers) SIGKILLed, started again 5 s later",
                    lambda: kill_active_controller(5)),
    "rolling_restart": ("each of 3 brokers stopped and started in turn", rolling_restart),
    "triton_outage": ("Triton stopped 10 s, then started", outage("triton", 10)),
    "redis_outage": ("Redis stopped 10 s, then started", outage("redis", 10)),
    # The same, while new sessions start all the time (each of 200 lasts 10 events): those the
    # worker cannot read during the outage are served from their event alone, flagged.
    "redis_outage_new_sessions": ("Redis stopped 10 s, then started; new sessions throughout", outage("redis", 10)),
}
CLIENT_ARGS = {"redis_outage_new_sessions": ["--session-life", "10"]}
CLUSTER_ONLY = {"broker_kill", "rolling_restart"}


def run(name: str, rate: float, seconds: float, until_back: float | None = None) -> dict:
    """One scenario; with ``until_back`` the client stops sending that long after the service is
    back (at most ``seconds`` in all), so the load covers a fault however long it takes. The
    cluster faults always run so (10 s after, 600 s at most): their brokers take minutes here."""
    if name in CLUSTER_ONLY and until_back is None:
        seconds, until_back = 600, 10.0
    what, inject = SCENARIOS[name]
    command = [sys.executable, "-m", "tools.bench_client", "--rate", str(rate), "--seconds", str(seconds),
               "--idle-timeout", "60", "--arrivals", *CLIENT_ARGS.get(name, [])]
    client = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    time.sleep(10)
    fault_at = time.time()
    inject()
    # The service is up and healthy again (up.sh waited for it); after worker_kill, the moment of
    # the kill, so the worker's next recommendation measures the whole restart.
    back = time.time()
    if until_back is not None:
        time.sleep(until_back)
        client.send_signal(signal.SIGUSR1)
    out, _ = client.communicate(timeout=seconds + 300)
    result = json.loads(out)
    last = result.pop("last_fallback_at")
    arrivals, produced = result.pop("arrivals"), result.pop("produced")
    next_after_back = min((t for t in arrivals if t >= back), default=None)
    # The same from the worker's side: the first recommendation its producer stamped after the
    # service was back (record timestamps; the worker runs on this machine's clock).
    worker_after_back = min((t for t in produced if t >= back), default=None)
    result.update(scenario=name, fault=what, fault_took_s=round(back - fault_at, 2),
                  resumed_after_back_s=round(next_after_back - back, 2) if next_after_back else None,
                  worker_resumed_after_back_s=round(worker_after_back - back, 2) if worker_after_back else None,
                  fallbacks_after_back_s=round(max(0.0, last - back), 2) if last else None)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--until-back", type=float, help="stop the load this long after the service is back "
                        "(--seconds is then the most it runs): the load covers a fault of any length")
    # Without three brokers (RECO_KAFKA_BROKERS, as `make faults KAFKA_BROKERS=3` exports it; or
    # KAFKA_BROKERS when run by hand) the two cluster faults cannot run.
    three = int(os.environ.get("RECO_KAFKA_BROKERS") or os.environ.get("KAFKA_BROKERS") or 1) >= 3
    parser.add_argument("--only", default=",".join(name for name in SCENARIOS if three or name not in CLUSTER_ONLY))
    args = parser.parse_args()
    if not three and CLUSTER_ONLY & set(args.only.split(",")):
        parser.error(f"{', '.join(sorted(CLUSTER_ONLY))} need three brokers: `make up KAFKA_BROKERS=3`")
    rows = []
    for name in args.only.split(","):
        result = run(name, args.rate, args.seconds, args.until_back)
        print(json.dumps({k: v for k, v in result.items() if k != "lag_samples"}), flush=True)
        rows.append(result)
        time.sleep(5)  # let the stack settle before the next fault
    print("\n| fault | sent | recommended | lost | duplicated | p99 ms | longest gap s | service back after s | "
          "next recommendation after it was back, s (client / worker) | fallbacks | "
          "last fallback after it was back, s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['fault']} | {r['sent']} | {r['received']} | {r['lost']} | {r['duplicated']} | "
              f"{r['p99_ms']:.0f} | {r['max_gap_s']} | {r['fault_took_s']} | "
              f"{r['resumed_after_back_s']} / {r['worker_resumed_after_back_s']} | "
              f"{', '.join(f'{n} {reason}' for reason, n in r['fallback_reasons'].items()) or 0} | "
              f"{r['fallbacks_after_back_s']} |")

if __name__ == "__main__":
    main()
