"""Feast feature definitions: what the worker keeps online per session, item and user.

Values are written by the stream worker with ``write_to_online_store`` (the push path); the
batch sources only document where offline history would live and are never materialised.
"""
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Int64, String

session = Entity(name="session", join_keys=["session_id"], value_type=ValueType.STRING)
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)


def _push_source(name: str) -> PushSource:
    return PushSource(
        name=f"{name}_push",
        batch_source=FileSource(name=f"{name}_history", path=f"data/{name}.parquet", timestamp_field="event_timestamp"),
    )


session_state = FeatureView(
    name="session_state",
    entities=[session],
    ttl=timedelta(days=2),
    schema=[
        Field(name="item_ids", dtype=Array(String)),  # most recent last, at most max_session_len
        Field(name="event_types", dtype=Array(String)),  # aligned with item_ids
        Field(name="purchased_items", dtype=Array(String)),
        Field(name="recent_event_ids", dtype=Array(String)),  # makes redelivered events idempotent
        Field(name="event_count", dtype=Int64),
        Field(name="last_ts", dtype=Int64),
    ],
    online=True,
    source=_push_source("session_state"),
)

item_stats = FeatureView(
    name="item_stats",
    entities=[item],
    ttl=timedelta(days=365),
    schema=[
        Field(name="interaction_count", dtype=Int64),
        Field(name="purchase_count", dtype=Int64),
        Field(name="category_id", dtype=String),
    ],
    online=True,
    source=_push_source("item_stats"),
)

user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=timedelta(days=365),
    schema=[Field(name="event_count", dtype=Int64), Field(name="session_count", dtype=Int64)],
    online=True,
    source=_push_source("user_stats"),
)

ENTITIES = [session, item, user]
FEATURE_VIEWS = [session_state, item_stats, user_stats]
