"""Feast feature definitions: what the worker keeps online per session, item and user.

The store is configured in code, not by a ``feature_store.yaml``: features/store.py builds the
``RepoConfig`` from the one Settings object (Redis or SQLite, ports, paths), so the ``feast`` CLI
is not used on this folder. The worker writes rows straight to the online store through the
provider's ``online_write_batch`` (features/store.py); Feast requires a batch source per view, and
these file sources are never read or materialised.
"""
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Int64, String

from contract.settings import get_settings

# Time to live per view (RECO_SESSION_TTL_S, ...): the online store deletes a row this long after
# its last write (features/store.py), not only hides it.
_ttl = get_settings()

session = Entity(name="session", join_keys=["session_id"], value_type=ValueType.STRING)
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)


def _unread_source(name: str) -> FileSource:
    return FileSource(name=f"{name}_history", path=f"data/{name}.parquet", timestamp_field="event_timestamp")


session_state = FeatureView(
    name="session_state",
    entities=[session],
    ttl=timedelta(seconds=_ttl.session_ttl_s),
    schema=[
        Field(name="item_ids", dtype=Array(String)),  # most recent last, at most max_session_len
        Field(name="event_types", dtype=Array(String)),  # aligned with item_ids
        Field(name="purchased_items", dtype=Array(String)),
        Field(name="recent_event_ids", dtype=Array(String)),  # makes redelivered events idempotent
        Field(name="event_count", dtype=Int64),
        Field(name="last_ts", dtype=Int64),
        # The last few recommendations (JSON [event ts, model version, items]) and how many later
        # events hit one: online attribution (features/feedback.py).
        Field(name="recommended", dtype=Array(String)),
        Field(name="attributed_count", dtype=Int64),
    ],
    online=True,
    source=_unread_source("session_state"),
)

item_stats = FeatureView(
    name="item_stats",
    entities=[item],
    ttl=timedelta(seconds=_ttl.item_ttl_s),
    schema=[
        Field(name="interaction_count", dtype=Int64),
        Field(name="purchase_count", dtype=Int64),
        Field(name="category_id", dtype=String),
        # per partition of `events`, the last event counted: counts stay exact on redelivery
        Field(name="applied_offsets", dtype=Array(Int64)),
    ],
    online=True,
    source=_unread_source("item_stats"),
)

user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=timedelta(seconds=_ttl.user_ttl_s),
    schema=[
        Field(name="event_count", dtype=Int64),
        Field(name="session_count", dtype=Int64),
        Field(name="session_ids", dtype=Array(String)),  # what an erasure by user deletes with it
        Field(name="applied_offsets", dtype=Array(Int64)),
    ],
    online=True,
    source=_unread_source("user_stats"),
)

ENTITIES = [session, item, user]
FEATURE_VIEWS = [session_state, item_stats, user_stats]
