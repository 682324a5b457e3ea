"""The owners of the counters: routing tallies to partitions, and counting each event once."""
from contract.messages import Tally, TallyBatch
from contract.settings import Settings
from features.cache import StateCache
from features.store import OnlineFeatures
from stream.checkpoint import item_key, route, user_key
from stream.counters import Counters


def tally(n: int, item: str, user: str | None = "u1", partition: int = 0) -> Tally:
    return Tally(event_id=f"e{n}", event_type="view", session_id="s1", user_id=user, item_id=item, category_id=None,
                 session_is_new=n == 0, source_partition=partition, source_offset=n)


def test_each_key_lands_on_one_partition_and_anonymous_events_have_no_user_tally():
    tallies = [tally(n, f"i{n % 5}", user=None if n % 2 else f"u{n % 3}") for n in range(40)]
    messages = route(tallies, item_key, partitions=8)
    partition_of: dict[str, int] = {}
    for partition, value in messages.items():
        for t in TallyBatch.model_validate_json(value).tallies:
            assert partition_of.setdefault(t.item_id, partition) == partition
    assert sum(len(TallyBatch.model_validate_json(v).tallies) for v in messages.values()) == 40
    users = route(tallies, user_key, partitions=8)
    assert sum(len(TallyBatch.model_validate_json(v).tallies) for v in users.values()) == 20


async def test_a_tally_batch_counted_twice_counts_once(tmp_path):
    features = OnlineFeatures(Settings(run_dir=tmp_path, online_store="sqlite"))
    features.apply()
    counters = Counters(StateCache(features), "item")
    batch = list(route([tally(n, "a") for n in range(5)] + [tally(9, "b", partition=3)], item_key, 8).values())
    await counters.count(batch)
    await counters.count(batch)  # the counter's own batch redelivered
    items = counters.state.items.values
    assert (items["a"].interaction_count, items["b"].interaction_count) == (5, 1)
    assert items["a"].applied_offsets == (4,) and items["b"].applied_offsets == (-1, -1, -1, 9)
