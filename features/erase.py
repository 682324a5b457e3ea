"""Erase a shopper: everything the stack keeps about a user or a session, on request.

    python -m features.erase --user USER_ID [--user ...] [--session SESSION_ID ...]

Ids are the ones the site sent; they are pseudonymised with the stack's key, as the worker does.
What goes:

* the online store's rows: the user's ``user_stats`` row and the ``session_state`` rows of the
  given sessions and of the user's recent sessions (the user row lists them);
* every worker's memory of those sessions and users, through an erasure message on the control
  topic that each worker reads in full; it forgets them and deletes the rows once more itself
  (so a write already under way cannot bring them back).

What stays, and for how long: the events on the ``events`` topic (and the recommendations and dead
letters derived from them) until the topic retention, RECO_TOPIC_RETENTION_HOURS. Item counters
are not about a person and stay. The project writes no training file with shoppers' ids
(training reads synthetic sessions and the public datasets only), so there is none to rewrite.
"""
from __future__ import annotations

import time

import typer
from kafka import KafkaProducer

from contract.messages import Erasure
from contract.settings import DURABLE_PRODUCER, get_settings
from features.privacy import pseudonym, require_key
from features.store import OnlineFeatures


def main(
    user: list[str] = typer.Option([], "--user", help="a user id as the site sends it (repeatable)"),
    session: list[str] = typer.Option([], "--session", help="a session id as the site sends it (repeatable)"),
) -> None:
    if not user and not session:
        raise typer.BadParameter("name at least one --user or --session")
    settings = get_settings()
    key = require_key(settings.pseudonym_key.get_secret_value())
    user_ids = [pseudonym(key, u) for u in user]
    given_sessions = [pseudonym(key, s) if settings.pseudonymize_sessions else s for s in session]

    features = OnlineFeatures(settings)
    users = features.read_users(user_ids)
    user_sessions = [s for u in user_ids for s in users[u].session_ids]
    session_ids = list(dict.fromkeys(given_sessions + user_sessions))

    # Rows first, then the workers: a worker writing them back meanwhile deletes them again itself.
    deleted = features.erase(session_ids, user_ids)
    erasure = Erasure(session_ids=session_ids, user_ids=user_ids, requested_at=int(time.time() * 1000))
    producer = KafkaProducer(**settings.kafka_client_options("admin"), **DURABLE_PRODUCER)
    sent = producer.send(settings.control_topic, value=erasure.model_dump_json().encode()).get(timeout=30)
    producer.close()

    for original, stored in zip(user, user_ids):
        found = users[stored].session_ids
        print(f"user {original} (stored as {stored}): {len(found)} recent sessions listed")
    print(f"online store ({settings.online_store}): deleted " +
          ", ".join(f"{view} {count}" for view, count in deleted.items()) +
          f" (of {len(session_ids)} sessions, {len(user_ids)} users asked)")
    print(f"workers: erasure sent to '{settings.control_topic}' (partition {sent.partition}, offset "
          f"{sent.offset}); each worker forgets these sessions and users (reco_erasures_total)")
    print(f"topics: events already sent stay on '{settings.events_topic}' (and what was derived from them on "
          f"'{settings.recommendations_topic}', '{settings.dlq_topic}') until retention, "
          f"{settings.topic_retention_hours} h")
    print("training files: none written by the project hold shoppers' ids")


if __name__ == "__main__":
    typer.run(main)
