"""Replay a dataset (or synthetic sessions) as events on the events topic, at a given rate.

    python -m tools.produce --source synthetic --sessions 200 --rate 500

The synthetic catalogue is fixed by --data-seed (the one the model was trained with); the
number of sessions only changes which sessions are drawn.
    python -m tools.produce --source diginetica --data ../shared/data/diginetica --limit 5000
    python -m tools.produce --source sessions --data ../shared/data/sessions/diginetica-srgnn --rate 500

``sessions`` replays the session benchmark's test sessions (serving.offline.data.
load_benchmark_test_sessions); tools.live_quality measures the recommendations they get.
"""
from __future__ import annotations

import heapq
import time
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import typer
from kafka import KafkaProducer
from rich.progress import Progress

from contract.messages import Event
from contract.settings import DURABLE_PRODUCER, Settings, get_settings
from serving.offline.data import Session, load, load_benchmark_test_sessions

cli = typer.Typer(add_completion=False)


def session_events(sessions: list[Session], stamp_now: bool, prefix: str = "") -> Iterator[Event]:
    """Events of all sessions merged in time order (sessions overlap, as on a live site).

    With ``stamp_now`` each event's ts is the wall clock at send time, so end-to-end latency is
    measurable; the order is still the original one. ``prefix`` makes session ids of repeated
    replays distinct, so each replay starts from fresh online session state.
    """
    def timeline(session: Session):
        return ((inter.ts, session.session_id, n, session, inter) for n, inter in enumerate(session.interactions))

    for _, _, n, session, inter in heapq.merge(*map(timeline, sessions), key=lambda t: t[:3]):
        session_id = prefix + session.session_id
        yield Event(event_id=f"{session_id}-{n}", event_type=inter.event_type, session_id=session_id,
                    user_id=session.user_id, item_id=inter.item_id,
                    ts=int(time.time() * 1000) if stamp_now else inter.ts,
                    price=inter.price, category_id=inter.category_id)


def make_producer(settings: Settings) -> KafkaProducer:
    """As the `producer` user, which may write `events` and nothing else."""
    return KafkaProducer(**settings.kafka_client_options("producer"), **DURABLE_PRODUCER, linger_ms=5,
                         max_request_size=4_000_000)


def send_paced(producer: KafkaProducer, topic: str, events: Iterable[Event], rate: float,
               sent_one: Callable[[], None] = lambda: None) -> None:
    """Each event keyed by its session, ``rate`` a second (0: as fast as possible), then flushed.
    Paced against the schedule, not per message, so rates stay exact."""
    start = time.perf_counter()
    for sent, event in enumerate(events):
        if rate > 0 and (delay := start + sent / rate - time.perf_counter()) > 0:
            time.sleep(delay)
        producer.send(topic, key=event.session_id.encode(), value=event.model_dump_json().encode())
        sent_one()
    producer.flush()


@cli.command()
def main(
    source: str = typer.Option("synthetic", help="synthetic | diginetica | sasrec | sessions"),
    data: Path = typer.Option(None, help="dataset file or folder (diginetica, sasrec, sessions)"),
    sessions: int = typer.Option(200, help="synthetic sessions to generate"),
    limit: int = typer.Option(0, help="stop after this many events (0 = all)"),
    rate: float = typer.Option(0.0, help="events per second (0 = as fast as possible)"),
    data_seed: int = typer.Option(0, help="synthetic only: catalogue seed (the one the model was trained with)"),
    items: int = typer.Option(2000, help="synthetic only: catalogue size; more than the model was trained on "
                              "(with another --data-seed) is a shifted catalogue with new items"),
    keep_ts: bool = typer.Option(False, help="keep the dataset's timestamps instead of now"),
    session_prefix: str = typer.Option(None, help="prefix for session ids (default: a per-run tag)"),
) -> None:
    prefix = f"r{int(time.time())}-" if session_prefix is None else session_prefix
    settings = get_settings()
    if source == "sessions":
        if data is None:
            raise typer.BadParameter("--source sessions needs --data (the benchmark's folder)")
        loaded = load_benchmark_test_sessions(data)
    else:
        loaded = load(source, data, sessions=sessions, seed=data_seed,
                      **({"n_items": items} if source == "synthetic" else {}))
    total = sum(len(s.interactions) for s in loaded)
    total = min(total, limit) if limit else total
    start = time.perf_counter()
    with Progress() as progress:
        task = progress.add_task(f"events -> {settings.events_topic}", total=total)
        events = islice(session_events(loaded, stamp_now=not keep_ts, prefix=prefix), total)
        send_paced(make_producer(settings), settings.events_topic, events, rate, lambda: progress.advance(task))
    elapsed = time.perf_counter() - start
    typer.echo(f"sent {total} events in {elapsed:.1f}s ({total / max(elapsed, 1e-9):.0f}/s)")


if __name__ == "__main__":
    cli()
