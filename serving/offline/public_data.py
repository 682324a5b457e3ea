"""Public benchmark data that a package registry carries, converted to SASRec text format.

MovieLens-100k ships inside the recbole wheel on PyPI, the one registry this project may reach
besides its own dependencies. The wheel is fetched with pip, the file is checked against a
pinned sha256, and converted the way SASRec's DataProcessing.py converts MovieLens-1M: every
rating is an implicit interaction, users and items with fewer than 5 ratings are dropped (one
pass), ids are renumbered from 1 in order of first appearance, and each user's items are sorted
by timestamp (stable, so ties keep file order). docs/results.md describes the converted file.

    python -m serving.offline.public_data ml-100k --out .run/data/ml-100k.txt
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import typer

ML100K_WHEEL = "recbole==1.2.1"
ML100K_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
ML100K_SHA256 = "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"
MIN_COUNT = 5


def ratings_to_sasrec(rows: list[tuple[str, str, int]]) -> list[tuple[int, int]]:
    """(user, item, timestamp) rows in file order -> SASRec ``(user, item)`` lines, users in
    order of first appearance, each user's items chronological."""
    user_count = Counter(u for u, _, _ in rows)
    item_count = Counter(i for _, i, _ in rows)
    user_ids: dict[str, int] = {}
    item_ids: dict[str, int] = {}
    history: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for user, item, ts in rows:
        if user_count[user] < MIN_COUNT or item_count[item] < MIN_COUNT:
            continue
        u = user_ids.setdefault(user, len(user_ids) + 1)
        i = item_ids.setdefault(item, len(item_ids) + 1)
        history[u].append((ts, i))
    return [(u, i) for u in sorted(history) for _, i in sorted(history[u], key=lambda pair: pair[0])]


def read_recbole_inter(text: str) -> list[tuple[str, str, int]]:
    lines = text.splitlines()
    header = lines[0].split("\t")
    u, i, t = (header.index(f"{name}:{kind}") for name, kind in
               (("user_id", "token"), ("item_id", "token"), ("timestamp", "float")))
    rows = []
    for line in lines[1:]:
        if line.strip():
            cols = line.split("\t")
            rows.append((cols[u], cols[i], int(float(cols[t]))))
    return rows


def fetch_ml100k() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, ML100K_WHEEL],
                       check=True)
        wheel = next(Path(tmp).glob("recbole-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            raw = zf.read(ML100K_MEMBER)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != ML100K_SHA256:
        raise RuntimeError(f"{ML100K_MEMBER} in {ML100K_WHEEL}: sha256 {digest}, expected {ML100K_SHA256}")
    return raw.decode("utf-8")


cli = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])


@cli.command("ml-100k")
def ml_100k(out: Path = typer.Option(..., help="SASRec text file to write")) -> None:
    pairs = ratings_to_sasrec(read_recbole_inter(fetch_ml100k()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{u} {i}\n" for u, i in pairs))
    users, items = len({u for u, _ in pairs}), len({i for _, i in pairs})
    print(f"wrote {out}: {users} users, {items} items, {len(pairs)} interactions")


@cli.callback()
def _commands() -> None:
    """Keeps `ml-100k` a named subcommand, so more datasets can be added beside it."""


if __name__ == "__main__":
    cli()
