"""Feast adapter: build the store from Settings, register the definitions, read and write the
online state, enforce each view's time to live and erase entities. Feast's calls block, so async
callers run them in a thread."""
from __future__ import annotations

import sqlite3
from dataclasses import fields
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Protocol, cast

import redis
from feast import FeatureStore, FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Int64List, StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RegistryConfig
from feast.types import Array, Int64
from redis.backoff import NoBackoff
from redis.retry import Retry

from contract.settings import Settings
from features.feature_repo.definitions import ENTITIES, FEATURE_VIEWS, item_stats, session_state, user_stats
from features.state import ItemStats, OnlineState, SessionState, Shown, UserStats

# Each state record is its feature view's row: the field names are the feature names (pinned by a test).
RECORDS: dict[str, type] = {"session_state": SessionState, "item_stats": ItemStats, "user_stats": UserStats}
KEY_SERIALIZATION_VERSION = 3


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
        # A Redis that is down must fail a call in about a second, not hang: the worker then serves
        # what it holds and tries again itself (stream/worker.py), which it cannot do while blocked.
        # skip_dedup: Feast otherwise reads every row's stored timestamp before writing it, a second
        # round trip per flush that guards against out-of-order writers. Each row here has one
        # writer (its partition's worker) stamping it with the time of writing, which only grows,
        # so the guard could never skip a row.
        online = RedisOnlineStoreConfig(connection_string=settings.redis_connection_string
                                        + ",socket_connect_timeout=1,socket_timeout=5", skip_dedup=True)
    else:
        online = SqliteOnlineStoreConfig(path=str(feast_dir / "online.db"))
    config = RepoConfig(
        project=settings.project_name,
        provider="local",
        registry=RegistryConfig(path=str(feast_dir / "registry.db"), cache_ttl_seconds=0),
        online_store=online,
        entity_key_serialization_version=KEY_SERIALIZATION_VERSION,
        repo_path=settings.feast_repo,
    )
    return FeatureStore(config=config)


def _proto(value: Any, int_list: bool = False) -> ValueProto:
    """A state field as Feast stores it: tuples as string (or int64) lists, ints as int64, None as unset."""
    if value is None:
        return ValueProto()
    if int_list:
        return ValueProto(int64_list_val=Int64List(val=value))
    if isinstance(value, tuple):
        return ValueProto(string_list_val=StringList(val=[v.encode() if isinstance(v, Shown) else v for v in value]))
    if isinstance(value, int):
        return ValueProto(int64_val=value)
    return ValueProto(string_val=value)


# Fields whose list entries are records, stored as strings (Shown.encode).
DECODERS = {"recommended": Shown.decode}


def _record(record_type: type, row: dict[str, Any]) -> Any:
    """A feature row (None where the entity has no value) -> its state record; lists become tuples."""
    values = {}
    for f in fields(record_type):
        value = row[f.name]
        if isinstance(value, list) and f.name in DECODERS:
            value = [DECODERS[f.name](v) for v in value]
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return record_type(**values)


def view_ttls(settings: Settings) -> dict[str, int]:
    """Seconds each view's row lives after its last write."""
    return {session_state.name: settings.session_ttl_s, item_stats.name: settings.item_ttl_s,
            user_stats.name: settings.user_ttl_s}


def entity_key(view: FeatureView, entity: str) -> EntityKeyProto:
    return EntityKeyProto(join_keys=[join_key(view)], entity_values=[ValueProto(string_val=entity)])


class Rows(Protocol):
    """Row-level upkeep Feast's online stores do not offer per entity: expiry and deletion."""

    def expire(self, view: FeatureView, entities: Iterable[str]) -> None: ...
    def delete(self, view: FeatureView, entities: Iterable[str]) -> int: ...
    def purge_expired(self) -> int: ...


class RedisRows:
    """Feast keeps one Redis hash per entity key (each view here has its own entity), so a view's
    time to live is the expiry of its keys, set after every write; Redis deletes them itself."""

    def __init__(self, settings: Settings):
        self.client = redis.Redis(host=settings.redis_host, port=settings.redis_port,
                                  username=settings.redis_auth["username"], password=settings.redis_auth["password"],
                                  retry=Retry(NoBackoff(), 0), socket_connect_timeout=1, socket_timeout=5)
        self.project, self.ttl_s = settings.project_name.encode(), view_ttls(settings)

    def key(self, view: FeatureView, entity: str) -> bytes:
        """The hash Feast's Redis store writes (feast.infra.online_stores.helpers._redis_key)."""
        return serialize_entity_key(entity_key(view, entity), KEY_SERIALIZATION_VERSION) + self.project

    def expire(self, view: FeatureView, entities: Iterable[str]) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for entity in entities:
                pipe.expire(self.key(view, entity), self.ttl_s[view.name])
            pipe.execute()

    def delete(self, view: FeatureView, entities: Iterable[str]) -> int:
        keys = [self.key(view, e) for e in entities]
        return cast(int, self.client.delete(*keys)) if keys else 0

    def purge_expired(self) -> int:
        return 0  # Redis expires the keys


class SqliteRows:
    """Feast's SQLite store has one table per view, one row per entity and feature; rows older
    than the view's time to live are deleted by :meth:`purge_expired`, which the worker calls."""

    def __init__(self, settings: Settings, path: str):
        self.path, self.project, self.ttl_s = path, settings.project_name, view_ttls(settings)

    def _execute(self, sql: str, params: tuple) -> int:
        with sqlite3.connect(self.path, timeout=30) as conn:  # commits on leaving the block
            try:
                return conn.execute(sql, params).rowcount
            except sqlite3.OperationalError as exc:  # a view nothing was written to yet
                if "no such table" in str(exc):
                    return 0
                raise

    def table(self, view: FeatureView) -> str:
        return f'"{self.project}_{view.name}"'

    def expire(self, view: FeatureView, entities: Iterable[str]) -> None:
        pass  # rows carry their write time; purge_expired deletes the old ones

    def delete(self, view: FeatureView, entities: Iterable[str]) -> int:
        return sum(self._execute(f"DELETE FROM {self.table(view)} WHERE entity_key = ?",
                                 (serialize_entity_key(entity_key(view, e), KEY_SERIALIZATION_VERSION),)) > 0
                   for e in entities)  # entities, not rows: a row per feature

    def purge_expired(self) -> int:
        # Feast writes event_ts as int(naive UTC datetime.timestamp()) through its sqlite3 adapter;
        # the cutoff is made the same way so the comparison is integer against integer.
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        return sum(self._execute(f"DELETE FROM {self.table(view)} WHERE event_ts < ?",
                                 (int((now - timedelta(seconds=self.ttl_s[view.name])).timestamp()),))
                   for view in FEATURE_VIEWS)


class OnlineFeatures:
    def __init__(self, settings: Settings):
        self.store = make_store(settings)
        self.rows: Rows = (RedisRows(settings) if settings.online_store == "redis"
                           else SqliteRows(settings, self.store.config.online_store.path))
        if settings.online_store == "redis":
            # redis-py retries a refused connection 3 times with backoff (seconds per failed read);
            # the worker retries on its own terms, so a call fails at once.
            online = cast(RedisOnlineStore, self.store._get_provider().online_store)
            online._get_client(self.store.config.online_store).set_retry(Retry(NoBackoff(), 0))

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
        names = feature_names(view)
        int_lists = {f.name for f in view.features if f.dtype == Array(Int64)}
        created: datetime | None = None
        rows = [(entity_key(view, entity), {n: _proto(getattr(record, n), n in int_lists) for n in names}, now, created)
                for entity, record in values.items()]
        self.store._get_provider().online_write_batch(self.store.config, view, rows, progress=None)
        self.rows.expire(view, values)

    def erase(self, session_ids: Iterable[str], user_ids: Iterable[str]) -> dict[str, int]:
        """Deletes these sessions' and users' rows; returns how many entities each view lost."""
        return {session_state.name: self.rows.delete(session_state, session_ids),
                user_stats.name: self.rows.delete(user_stats, user_ids)}

    def purge_expired(self) -> int:
        return self.rows.purge_expired()
