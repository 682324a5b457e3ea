"""Feast adapter: build the store from Settings, register the definitions, read and write the
online state. Feast's calls block, so async callers run them in a thread."""
from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timezone
from typing import Any

from feast import FeatureStore, FeatureView, RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RegistryConfig

from contract.settings import Settings
from features.feature_repo.definitions import ENTITIES, FEATURE_VIEWS, item_stats, session_state, user_stats
from features.state import ItemStats, OnlineState, SessionState, UserStats

# Each state record is its feature view's row: the field names are the feature names (pinned by a test).
RECORDS: dict[str, type] = {"session_state": SessionState, "item_stats": ItemStats, "user_stats": UserStats}


def feature_names(view: FeatureView) -> list[str]:
    return [f.name for f in view.features]


def join_key(view: FeatureView) -> str:
    entity = next(e for e in ENTITIES if e.name == view.entities[0])
    return entity.join_key


def make_store(settings: Settings) -> FeatureStore:
    feast_dir = settings.run_dir / "feast"
    feast_dir.mkdir(parents=True, exist_ok=True)
    online: RedisOnlineStoreConfig | SqliteOnlineStoreConfig
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


def _proto(value: Any) -> ValueProto:
    """A state field as Feast stores it: tuples as string lists, ints as int64, None as unset."""
    if value is None:
        return ValueProto()
    if isinstance(value, tuple):
        return ValueProto(string_list_val=StringList(val=value))
    if isinstance(value, int):
        return ValueProto(int64_val=value)
    return ValueProto(string_val=value)


def _record(record_type: type, row: dict[str, Any]) -> Any:
    """A feature row (None where the entity has no value) -> its state record; lists become tuples."""
    values = {}
    for f in fields(record_type):
        value = row[f.name]
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return record_type(**values)


class OnlineFeatures:
    def __init__(self, settings: Settings):
        self.store = make_store(settings)

    def apply(self) -> None:
        """Register entities and feature views (idempotent)."""
        self.store.apply([*ENTITIES, *FEATURE_VIEWS])

    def _read(self, view: FeatureView, ids: list[str]) -> dict[str, Any]:
        if not ids:
            return {}
        names = feature_names(view)
        response = self.store.get_online_features(
            features=[f"{view.name}:{name}" for name in names], entity_rows=[{join_key(view): i} for i in ids]
        ).to_dict()
        record_type = RECORDS[view.name]
        return {entity: _record(record_type, {n: response[n][row] for n in names}) for row, entity in enumerate(ids)}

    def read_sessions(self, session_ids: list[str]) -> dict[str, SessionState]:
        return self._read(session_state, session_ids)

    def read_items(self, item_ids: list[str]) -> dict[str, ItemStats]:
        return self._read(item_stats, item_ids)

    def read_users(self, user_ids: list[str]) -> dict[str, UserStats]:
        return self._read(user_stats, user_ids)

    def read(self, session_ids: list[str], item_ids: list[str], user_ids: list[str]) -> OnlineState:
        return OnlineState(self.read_sessions(session_ids), self.read_items(item_ids), self.read_users(user_ids))

    def write(self, state: OnlineState) -> None:
        now = datetime.now(timezone.utc)
        for view, values in ((session_state, state.sessions), (item_stats, state.items), (user_stats, state.users)):
            if values:
                self._write(view, values, now)

    def _write(self, view: FeatureView, values: dict[str, Any], now: datetime) -> None:
        """Rows straight to the online store through Feast's provider interface: the same call
        ``write_to_online_store`` ends in, without its DataFrame -> Arrow -> proto detour, which
        cost the worker more CPU than anything but the model."""
        names, key = feature_names(view), join_key(view)
        created: datetime | None = None
        rows = [(EntityKeyProto(join_keys=[key], entity_values=[ValueProto(string_val=entity)]),
                 {n: _proto(getattr(record, n)) for n in names}, now, created) for entity, record in values.items()]
        self.store._get_provider().online_write_batch(self.store.config, view, rows, progress=None)
