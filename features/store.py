"""Feast adapter: build the store from Settings, register the definitions, read and write the
online state. Feast's calls block, so async callers run them in a thread."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
from feast import FeatureStore, RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.repo_config import RegistryConfig

from contract.settings import Settings
from features.feature_repo.definitions import ENTITIES, FEATURE_VIEWS
from features.state import ItemStats, OnlineState, SessionState, UserStats

SESSION_FEATURES = ["item_ids", "event_types", "purchased_items", "recent_event_ids", "event_count", "last_ts"]
ITEM_FEATURES = ["interaction_count", "purchase_count", "category_id"]
USER_FEATURES = ["event_count", "session_count"]


def make_store(settings: Settings) -> FeatureStore:
    feast_dir = settings.run_dir / "feast"
    feast_dir.mkdir(parents=True, exist_ok=True)
    if settings.online_store == "redis":
        online = RedisOnlineStoreConfig(connection_string=settings.redis_connection_string)
    else:
        online = SqliteOnlineStoreConfig(path=str(feast_dir / "online.db"))
    config = RepoConfig(
        project=settings.project_name,
        provider="local",
        registry=RegistryConfig(path=str(feast_dir / "registry.db"), cache_ttl_seconds=0),
        online_store=online,
        entity_key_serialization_version=3,
        repo_path=settings.feast_repo,
    )
    return FeatureStore(config=config)


class OnlineFeatures:
    def __init__(self, settings: Settings):
        self.store = make_store(settings)

    def apply(self) -> None:
        """Register entities and feature views (idempotent)."""
        self.store.apply([*ENTITIES, *FEATURE_VIEWS])

    def _read(self, view: str, key: str, ids: list[str], names: list[str]) -> list[dict]:
        if not ids:
            return []
        response = self.store.get_online_features(
            features=[f"{view}:{name}" for name in names], entity_rows=[{key: i} for i in ids]
        ).to_dict()
        return [{name: response[name][row] for name in names} for row in range(len(ids))]

    def read_sessions(self, session_ids: list[str]) -> dict[str, SessionState]:
        rows = self._read("session_state", "session_id", session_ids, SESSION_FEATURES)
        return {
            sid: SessionState(
                item_ids=tuple(row["item_ids"] or ()),
                event_types=tuple(row["event_types"] or ()),
                purchased_items=tuple(row["purchased_items"] or ()),
                recent_event_ids=tuple(row["recent_event_ids"] or ()),
                event_count=row["event_count"] or 0,
                last_ts=row["last_ts"] or 0,
            )
            for sid, row in zip(session_ids, rows)
        }

    def read_items(self, item_ids: list[str]) -> dict[str, ItemStats]:
        rows = self._read("item_stats", "item_id", item_ids, ITEM_FEATURES)
        return {
            iid: ItemStats(row["interaction_count"] or 0, row["purchase_count"] or 0, row["category_id"])
            for iid, row in zip(item_ids, rows)
        }

    def read_users(self, user_ids: list[str]) -> dict[str, UserStats]:
        rows = self._read("user_stats", "user_id", user_ids, USER_FEATURES)
        return {uid: UserStats(row["event_count"] or 0, row["session_count"] or 0) for uid, row in zip(user_ids, rows)}

    def read(self, session_ids: list[str], item_ids: list[str], user_ids: list[str]) -> OnlineState:
        return OnlineState(self.read_sessions(session_ids), self.read_items(item_ids), self.read_users(user_ids))

    def write(self, state: OnlineState) -> None:
        now = datetime.now(timezone.utc)
        if state.sessions:
            self._write("session_state", "session_id", state.sessions, SESSION_FEATURES, now, list)
        if state.items:
            self._write("item_stats", "item_id", state.items, ITEM_FEATURES, now, None)
        if state.users:
            self._write("user_stats", "user_id", state.users, USER_FEATURES, now, None)

    def _write(self, view, key, values: dict, names, now, seq_type) -> None:
        def cell(value):
            return seq_type(value) if seq_type is not None and isinstance(value, tuple) else value

        frame = pd.DataFrame(
            [{key: entity, **{n: cell(getattr(v, n)) for n in names}, "event_timestamp": now} for entity, v in values.items()]
        )
        self.store.write_to_online_store(view, frame)
