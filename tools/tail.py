"""Pretty-print recommendations as they arrive, with their tokens rendered for people.

    python -m tools.tail [--from-beginning] [--max N]
"""
from __future__ import annotations

import logging

import typer
from kafka import KafkaConsumer
from rich.console import Console
from rich.table import Table

from contract.messages import InvalidEvent, Recommendation, parse_event
from contract.settings import get_settings

log = logging.getLogger(__name__)
cli = typer.Typer(add_completion=False)

_VERBS = {"view": "viewed", "click": "clicked", "add_to_cart": "added to cart", "purchase": "bought"}


def humanize(token: str) -> str:
    """'view:i-42' -> 'because you viewed i-42', and so on for the whole vocabulary."""
    kind, _, value = token.partition(":")
    if kind in _VERBS and value:
        return f"because you {_VERBS[kind]} {value}"
    if kind == "category":
        return f"same category ({value}) as items in your session"
    if kind == "fallback":
        return f"fallback ({value.replace('_', ' ')})"
    return {"popular": "popular with shoppers", "trending": "trending now",
            "cold_start": "new session: too little to personalise yet"}.get(token, token)


def render(rec: Recommendation, console: Console) -> None:
    title = f"session {rec.session_id} · event {rec.event_id} · {rec.model_version}"
    if rec.fallback:
        title += f" · fallback: {rec.fallback}"
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("score", justify="right")
    table.add_column("why")
    for rank, item in enumerate(rec.items, 1):
        table.add_row(str(rank), item.item_id, f"{item.score:.2f}", "; ".join(map(humanize, item.explanation)))
    console.print(table)


def summary(recs: list[Recommendation], event_ts: dict[str, int]) -> str:
    """One line: how many, how fast, and event-to-recommendation latency percentiles."""
    latencies = sorted(r.generated_at - event_ts[r.event_id] for r in recs if r.event_id in event_ts)
    span_s = max(1e-3, (max(r.generated_at for r in recs) - min(r.generated_at for r in recs)) / 1000)

    def pct(p: float) -> str:
        return f"{latencies[min(len(latencies) - 1, int(p * len(latencies)))]} ms" if latencies else "n/a"

    fallbacks = sum(r.fallback is not None for r in recs)
    return (f"{len(recs)} recommendations in {span_s:.1f}s ({len(recs) / span_s:.0f}/s); event->recommendation "
            f"latency p50 {pct(0.5)}, p95 {pct(0.95)}, p99 {pct(0.99)} (of {len(latencies)} timed); "
            f"fallbacks {fallbacks}")


def parse_or_warn(parse, message):
    """Whatever a topic holds, a reader skips what it cannot parse (with a warning) and goes on."""
    try:
        return parse()
    except (InvalidEvent, ValueError, RecursionError) as exc:
        log.warning("skipping %s[%d]@%d: %s", message.topic, message.partition, message.offset,
                    str(exc).splitlines()[0][:200])
        return None


@cli.command()
def main(from_beginning: bool = typer.Option(False), max_messages: int = typer.Option(0, "--max"),
         timeout_s: float = typer.Option(0, help="stop after this many idle seconds (0 = never)"),
         session_prefix: str = typer.Option("", help="only sessions whose id starts with this"),
         show: int = typer.Option(0, help="render only the first N (0 = all); with --max, a summary line ends"),
         raw: bool = typer.Option(False, help="print the JSON as it arrives")) -> None:
    settings = get_settings()
    topics = [settings.recommendations_topic] + ([settings.events_topic] if show else [])
    consumer = KafkaConsumer(*topics, **settings.kafka_client_options("reader"),
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             consumer_timeout_ms=int(timeout_s * 1000) if timeout_s else float("inf"),
                             max_partition_fetch_bytes=10_000_000)
    console = Console()
    recs: list[Recommendation] = []
    event_ts: dict[str, int] = {}
    untimed: set[str] = set()  # recommendations whose event has not been read yet
    invalid_events = 0
    for message in consumer:
        if message.topic == settings.events_topic:  # read only to time the summary line
            try:  # an event the worker dead-lettered has no recommendation to time: counted, not shown
                event = parse_event(message.value or b"", settings.max_event_bytes)
            except InvalidEvent:
                invalid_events += 1
            else:
                event_ts[event.event_id] = event.ts
                untimed.discard(event.event_id)
            if max_messages and len(recs) >= max_messages and not untimed:
                break
            continue
        rec = parse_or_warn(lambda: Recommendation.model_validate_json(message.value or b""), message)
        if rec is None:
            continue
        if not rec.session_id.startswith(session_prefix):
            continue
        recs.append(rec)
        if show and rec.event_id not in event_ts:
            untimed.add(rec.event_id)
        if raw:
            console.print_json(message.value.decode())
        elif not show or len(recs) <= show:
            render(rec, console)
        if max_messages and len(recs) >= max_messages and not untimed:
            break
    consumer.close()
    if show and recs:
        console.print(summary(recs, event_ts))
    if invalid_events:
        log.warning("%d messages on %s are not valid events (the worker dead-letters them)", invalid_events,
                    settings.events_topic)


if __name__ == "__main__":
    cli()
