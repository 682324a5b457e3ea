"""Pretty-print recommendations as they arrive, with their tokens rendered for people.

    python -m stream.tail [--from-beginning] [--max N]
"""
from __future__ import annotations

import json

import typer
from kafka import KafkaConsumer
from rich.console import Console
from rich.table import Table

from stream.config import get_settings
from stream.schemas import Recommendation

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


@cli.command()
def main(from_beginning: bool = typer.Option(False), max_messages: int = typer.Option(0, "--max"),
         timeout_s: float = typer.Option(0, help="stop after this many idle seconds (0 = never)"),
         raw: bool = typer.Option(False, help="print the JSON as it arrives")) -> None:
    settings = get_settings()
    consumer = KafkaConsumer(settings.recommendations_topic, bootstrap_servers=settings.bootstrap_servers,
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             consumer_timeout_ms=int(timeout_s * 1000) if timeout_s else float("inf"))
    console = Console()
    for seen, message in enumerate(consumer, 1):
        if raw:
            console.print_json(message.value.decode())
        else:
            render(Recommendation.model_validate(json.loads(message.value)), console)
        if max_messages and seen >= max_messages:
            break
    consumer.close()


if __name__ == "__main__":
    cli()
