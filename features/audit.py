"""What Feast holds against what a list of events implies: the check behind the stack tests and
the chaos soak (deploy/soak.py) that the online state is exact after faults."""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, Sequence

from contract.settings import Settings
from features.privacy import pseudonym, require_key
from features.store import make_store


def feast_mismatches(settings: Settings, events: list[dict[str, Any]], session_ids: list[str],
                     item_ids: list[str], user_ids: Sequence[str] = ()) -> list[str]:
    """Where Feast's own online read differs from what ``events`` imply: each session's item ids,
    event types and count (in event order; no row for a session no event names), each item's
    interaction and purchase counts, each user's event and session counts (users by their clear
    id). Empty when every row is exact."""
    store = make_store(settings)
    key = require_key(settings.pseudonym_key.get_secret_value())

    def read(features: list[str], entity: str, ids: list[str]) -> dict[str, list]:
        """Feast's columns for ``ids``, read 1,000 rows at a time (a soak checks tens of thousands)."""
        columns: dict[str, list] = {}
        for start in range(0, len(ids), 1000):  # an empty read would fail in Feast: none is made
            rows = [{entity: i} for i in ids[start:start + 1000]]
            for name, values in store.get_online_features(features=features, entity_rows=rows).to_dict().items():
                columns.setdefault(name, []).extend(values)
        return columns

    sessions = read(["session_state:item_ids", "session_state:event_types", "session_state:event_count"],
                    "session_id", session_ids)
    items = read(["item_stats:interaction_count", "item_stats:purchase_count"], "item_id", item_ids)
    users = read(["user_stats:event_count", "user_stats:session_count"], "user_id",
                 [pseudonym(key, u) for u in user_ids])
    by_session: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_session.setdefault(event["session_id"], []).append(event)
    wrong = []
    for row, session in enumerate(session_ids):
        mine = by_session.get(session, [])
        # A session no event names (an erased one) has no row: Feast reads None.
        want = ([e["item_id"] for e in mine], [e["event_type"] for e in mine], len(mine)) if mine else (None,) * 3
        got = (sessions["item_ids"][row], sessions["event_types"][row], sessions["event_count"][row])
        if got != want:
            wrong.append(f"session {session}: {got} != {want}")
    interactions = Counter(e["item_id"] for e in events)
    purchases = Counter(e["item_id"] for e in events if e["event_type"] == "purchase")
    for row, item in enumerate(item_ids):
        got_counts = (items["interaction_count"][row], items["purchase_count"][row])
        if got_counts != (interactions[item], purchases[item]):
            wrong.append(f"item {item}: {got_counts} != {(interactions[item], purchases[item])}")
    user_events = Counter(e["user_id"] for e in events)
    user_sessions = Counter(user for user, _ in {(e["user_id"], e["session_id"]) for e in events})
    for row, user in enumerate(user_ids):
        got_counts = (users["event_count"][row], users["session_count"][row])
        if got_counts != (user_events[user], user_sessions[user]):
            wrong.append(f"user {user}: {got_counts} != {(user_events[user], user_sessions[user])}")
    return wrong


def feast_settled(settings: Settings, events: list[dict[str, Any]], session_ids: list[str], item_ids: list[str],
                  user_ids: Sequence[str] = (), timeout_s: float = 30) -> list[str]:
    """:func:`feast_mismatches` once the worker's write-behind and the tallies' owners have caught up
    (polled until none is left or ``timeout_s`` passes): empty when every row ends exact."""
    deadline = time.monotonic() + timeout_s
    while (wrong := feast_mismatches(settings, events, session_ids, item_ids, user_ids)) \
            and time.monotonic() < deadline:
        time.sleep(1)
    return wrong
