"""The session benchmark through the live stack: its test sessions replayed as events, and the
recommendations scored three ways on exactly the same cases (each event's recommendation against
the session's next item):

* **client**: what an outside Kafka client reads back on the recommendations topic;
* **worker**: the worker's own attribution counters, read from Prometheus
  (``reco_attributed_events_total`` and ``reco_attributed_reciprocal_rank_total`` over the
  recommendations that had a next event);
* **offline**: ``serving.offline.evaluate``'s ``served`` protocol (every item but the current one)
  on the same cases, with the served version's own files.

    .venv/bin/python -m tools.live_quality --data ../shared/data/sessions/diginetica-srgnn --rate 500

Needs ``make up`` serving a model trained on the benchmark (``serving.offline.train --format
sessions``, exported with ``serving.online.export publish``), and the worker started with
``RECO_CATALOGUE=sessions`` (its items are the site's) and ``RECO_ATTRIBUTION_MESSAGES=1`` (a hit
is the next event on an item of the session's latest recommendation, as offline). Any gap between
the three beyond tie-breaks is a bug in the served path. Prints one JSON object.
"""
from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import typer
from kafka import KafkaConsumer, TopicPartition

from contract.messages import Recommendation
from contract.settings import get_settings
from serving.model.sessions import Session
from serving.offline.data import load_benchmark_test_sessions
from tools.produce import make_producer, send_paced, session_events

cli = typer.Typer(add_completion=False)
K = 10


def prometheus_sum(query: str) -> float:
    url = f"http://127.0.0.1:{get_settings().prometheus_port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": f"sum({query})"})
    result = json.load(urllib.request.urlopen(url, timeout=10))["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def worker_counters() -> dict[str, float]:
    return {"recommendations": prometheus_sum("reco_recommendations_total"),
            "hits": prometheus_sum('reco_attributed_events_total{event_type="view"}'),
            "reciprocal_ranks": prometheus_sum('reco_attributed_reciprocal_rank_total{event_type="view"}')}


def settled_counters(expected_recommendations: float, before: dict[str, float], timeout_s: float = 60
                     ) -> dict[str, float]:
    """The counters once Prometheus has scraped every recommendation of the replay (every 5 s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = worker_counters()
        if now["recommendations"] - before["recommendations"] >= expected_recommendations \
                or time.monotonic() > deadline:
            time.sleep(6)  # one more scrape: the attribution of the last events lands with them
            return worker_counters()
        time.sleep(2)


def score_recommendations(sessions: list[Session], prefix: str, recs: dict[str, list[str]]) -> dict:
    """HR@K and MRR@K of the first recommendation read for each event that has a next one."""
    hits = cases = lost = 0
    reciprocal = 0.0
    for session in sessions:
        items = session.items
        for n in range(len(items) - 1):
            cases += 1
            shown = recs.get(f"{prefix}{session.session_id}-{n}")
            if shown is None:
                lost += 1
            elif items[n + 1] in shown[:K]:
                hits += 1
                reciprocal += 1 / (shown.index(items[n + 1]) + 1)
    return {"cases": cases, f"hr@{K}": hits / cases, f"mrr@{K}": reciprocal / cases, "lost": lost}


def offline_served(model_dir: Path, sessions: list[Session]) -> dict:
    """The served protocol on the same cases (serving.offline.evaluate), scored with ``model_dir``."""
    import numpy as np

    from serving.model.artifacts import load_model_dir
    from serving.offline.evaluate import evaluate_scorer, model_scorer
    from serving.offline.sequences import prefix_cases

    net, vocab = load_model_dir(model_dir)
    cases = prefix_cases([np.array([vocab.encode_item(i) for i in s.items], dtype=np.int64) for s in sessions])
    res = evaluate_scorer(model_scorer(net), cases, vocab.n_items, protocols=("served",))["served"]
    return {"cases": res["users"], f"hr@{K}": res[f"hr@{K}"], f"mrr@{K}": res[f"mrr@{K}"]}


def newest_version() -> Path:
    from serving.online.export import versions

    folder = get_settings().model_repo / get_settings().model_name
    return folder / str(versions(folder)[-1])


@cli.command()
def main(data: Path = typer.Option(..., help="the session benchmark's folder (train.txt, test.txt)"),
         sessions: int = typer.Option(0, help="replay the first N test sessions (0 = all)"),
         rate: float = typer.Option(500, help="events per second"),
         model: Path = typer.Option(None, help="the served version's folder (default: the newest in model_repo)"),
         idle_timeout_s: float = typer.Option(60, help="stop reading after this long without a recommendation"),
         ) -> None:
    settings = get_settings()
    replay = load_benchmark_test_sessions(data)
    replay = replay[:sessions] if sessions else replay
    prefix = f"lq{int(time.time())}-"
    n_events = sum(len(s) for s in replay)

    consumer = KafkaConsumer(**settings.kafka_client_options("reader"), max_partition_fetch_bytes=10_000_000,
                             consumer_timeout_ms=int(idle_timeout_s * 1000))
    partitions = [TopicPartition(settings.recommendations_topic, p)
                  for p in consumer.partitions_for_topic(settings.recommendations_topic)]
    consumer.assign(partitions)
    consumer.seek_to_end()
    for tp in partitions:  # the positions are fixed now, before the first event is sent
        consumer.position(tp)
    before = worker_counters()

    start = time.perf_counter()
    send_paced(make_producer(settings), settings.events_topic, session_events(replay, stamp_now=True, prefix=prefix),
               rate)
    sent_s = time.perf_counter() - start

    recs: dict[str, list[str]] = {}
    duplicated = fallbacks = 0
    versions: set[str] = set()
    for message in consumer:
        rec = Recommendation.model_validate_json(message.value)
        if not rec.session_id.startswith(prefix):
            continue
        if rec.event_id in recs:
            duplicated += 1
            continue
        recs[rec.event_id] = [item.item_id for item in rec.items]
        versions.add(rec.model_version)
        fallbacks += rec.fallback is not None
        if len(recs) == n_events:
            break
    consumer.close()

    client = score_recommendations(replay, prefix, recs) | {"duplicated": duplicated, "fallbacks": fallbacks}
    after = settled_counters(n_events, before)
    delta = {k: after[k] - before[k] for k in after}
    followed = delta["recommendations"] - len(replay)  # a session's last recommendation has no next event
    worker = {"recommendations": int(delta["recommendations"]), "cases": int(followed),
              f"hr@{K}": delta["hits"] / followed if followed > 0 else None,
              f"mrr@{K}": delta["reciprocal_ranks"] / followed if followed > 0 else None}
    offline = offline_served(model or newest_version(), replay)
    result = {"sessions": len(replay), "events": n_events, "rate": rate, "sent_s": round(sent_s, 1),
              "model_versions": sorted(versions), "offline": offline, "client": client, "worker": worker}
    print(json.dumps(result))


if __name__ == "__main__":
    cli()
