"""Fakes shared by the worker's tests: a ranker in place of Triton, a store that can go down like
Redis, events, and the pipeline on real (embedded SQLite) Feast."""
import json

from redis.exceptions import ConnectionError as RedisConnectionError

from contract.ranking import Candidate
from contract.settings import Settings
from features.cache import StateCache
from features.store import OnlineFeatures
from stream.pipeline import BatchResult, Folded, Pipeline, RawMessage


class FakeRanker:
    """Ranks a fixed catalogue, cites the most recent interaction; can be switched off."""

    def __init__(self):
        self.down = False
        self.catalogue = "synthetic"  # the catalogue the fake model was trained on

    async def rank(self, sessions):
        if self.down:
            raise ConnectionError("triton is down")
        out = []
        for items, _ in sessions:
            out.append([Candidate(f"i{n}", 30.0 - n, len(items) - 1, 0.5) for n in range(30)])
        return out, "fake:1", self.catalogue


class FlakyStore:
    """A store that can be switched off: reads and writes then fail as an unreachable Redis does."""

    def __init__(self, store):
        self.store, self.down = store, False

    def read(self, *ids):
        if self.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return self.store.read(*ids)

    def write(self, state):
        if self.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.store.write(state)

    def erase(self, session_ids, user_ids):
        return self.store.erase(session_ids, user_ids)

    def purge_expired(self):
        return self.store.purge_expired()


def event(n, session="s1", kind="view", item=None):
    return {"event_id": f"e{n}", "event_type": kind, "session_id": session, "user_id": "u1",
            "item_id": item or f"i{n}", "ts": 1_700_000_000_000 + n, "price": 1.0, "category_id": "c1"}


def messages(payloads, partition=0, first_offset=0):
    return [RawMessage(p if isinstance(p, bytes) else json.dumps(p).encode(), "events", partition, first_offset + n,
                       origin=f"p{partition}@{first_offset + n}")
            for n, p in enumerate(payloads)]


def make_pipeline(tmp_path, **overrides) -> Pipeline:
    settings = Settings(run_dir=tmp_path, online_store="sqlite", **{"k": 5, **overrides})
    features = OnlineFeatures(settings)
    features.apply()
    return Pipeline(settings, StateCache(features), FakeRanker())


async def process(pipeline: Pipeline, batch: list[RawMessage]) -> tuple[Folded, BatchResult]:
    """What the worker does with a batch, without publishing: fold, recommend, learn."""
    folded = await pipeline.fold(batch)
    result = await pipeline.recommend(folded)
    pipeline.learn(folded, result)
    return folded, result
