"""Loaders on tiny temp files in each format, the synthetic generator, and the real shared data."""
from collections import Counter
from pathlib import Path

import pytest

from contract.vocab import EVENT_TYPES
from serving.offline.data import SHARED_DATA, Interaction, Session, generate_synthetic, load_diginetica, load_sasrec

REAL_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


def test_shared_data_constant_points_next_to_the_project():
    assert SHARED_DATA == REAL_DATA


def test_load_sasrec(tmp_path):
    f = tmp_path / "tiny.txt"
    f.write_text("1 10\n1 11\n2 5\n1 12\n10 3\n2 6\n\n")
    sessions = load_sasrec(f)
    assert [s.session_id for s in sessions] == ["1", "2", "10"]  # numeric order of user ids
    s1 = sessions[0]
    assert s1.user_id == "1"
    assert [x.item_id for x in s1.interactions] == ["10", "11", "12"]
    assert all(x.event_type == "view" for x in s1.interactions)
    assert [x.ts for x in s1.interactions] == [0, 1, 3]  # line index: monotone
    assert [x.item_id for x in sessions[1].interactions] == ["5", "6"]


def _write_diginetica(d: Path) -> None:
    (d / "train-item-views.sample.csv").write_text(
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;100;5000;2016-05-09\n"
        "1;NA;101;1000;2016-05-09\n"
        "1;NA;102;9000;2016-05-09\n"
        "2;77;200;0;2016-05-10\n"
        "2;77;201;3000;2016-05-10\n"
    )
    (d / "train-purchases.csv").write_text(
        "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n"
        "1;NA;6000;2016-05-09;1;100\n"
        "2;77;9000;2016-05-10;2;201\n"
        "3;NA;100;2016-05-10;3;999\n"  # session not in the views file: ignored
    )
    (d / "product-categories.csv").write_text("itemId;categoryId\n100;7\n101;7\n200;8\n999;9\n")


def test_load_diginetica(tmp_path):
    _write_diginetica(tmp_path)
    sessions = load_diginetica(tmp_path)
    assert [s.session_id for s in sessions] == ["1", "2"]
    s1, s2 = sessions
    assert s1.user_id is None and s2.user_id == "77"
    day = 1462752000000  # 2016-05-09T00:00Z in ms
    assert [(x.item_id, x.event_type, x.ts) for x in s1.interactions] == [
        ("101", "view", day + 1000), ("100", "view", day + 5000), ("100", "purchase", day + 6000),
        ("102", "view", day + 9000)]
    assert [x.category_id for x in s1.interactions] == ["7", "7", "7", None]
    assert [(x.item_id, x.event_type) for x in s2.interactions] == [
        ("200", "view"), ("201", "view"), ("201", "purchase")]
    assert s2.interactions[0].ts == day + 86_400_000
    assert all(isinstance(x, Interaction) for s in sessions for x in s.interactions)


def test_synthetic_is_deterministic_and_realistic():
    a = generate_synthetic(10_000, seed=7)
    b = generate_synthetic(10_000, seed=7)
    assert a == b
    assert generate_synthetic(50, seed=8) != a[:50]
    assert all(isinstance(s, Session) for s in a)
    for s in a[:500]:
        ts = [x.ts for x in s.interactions]
        assert ts == sorted(ts)
        assert all(x.event_type in EVENT_TYPES and x.category_id and x.price and x.price > 0 for x in s.interactions)
        # funnel: a click/cart/purchase of an item comes after its view
        viewed = set()
        for x in s.interactions:
            if x.event_type == "view":
                viewed.add(x.item_id)
            else:
                assert x.item_id in viewed
    types = Counter(x.event_type for s in a for x in s.interactions)
    assert types["view"] > types["click"] > types["add_to_cart"] > types["purchase"] > 0
    pop = Counter(x.item_id for s in a for x in s.interactions).most_common()
    assert pop[0][1] > 20 * pop[len(pop) // 2][1]  # long tail
    assert 0.2 < sum(s.user_id is not None for s in a) / len(a) < 0.6
    # item -> category and item -> price are functions
    cat, price = {}, {}
    for s in a:
        for x in s.interactions:
            assert cat.setdefault(x.item_id, x.category_id) == x.category_id
            assert price.setdefault(x.item_id, x.price) == x.price


def test_synthetic_sessions_stay_in_their_intent_category():
    sessions = generate_synthetic(3000, seed=1)
    same = total = 0
    n_cat = len({x.category_id for s in sessions for x in s.interactions})
    for s in sessions:
        views = [x.category_id for x in s.interactions if x.event_type == "view"]
        for a, b in zip(views, views[1:]):
            total += 1
            same += a == b
    assert same / total > 5 / n_cat  # far more than chance


@pytest.mark.data
@pytest.mark.skipif(not (REAL_DATA / "diginetica").exists(),
                    reason=f"shared data not found at {REAL_DATA / 'diginetica'} "
                           "(read in place, never copied into the repo)")
def test_real_diginetica_sample():
    sessions = load_diginetica(REAL_DATA / "diginetica")
    assert len(sessions) == 2986
    views = sum(x.event_type == "view" for s in sessions for x in s.interactions)
    purchases = sum(x.event_type == "purchase" for s in sessions for x in s.interactions)
    with open(REAL_DATA / "diginetica" / "train-item-views.sample.csv") as fh:
        n_rows = sum(1 for line in fh if line.strip()) - 1  # minus the header (12,391 rows)
    assert views == n_rows
    assert purchases > 0
    assert len({s.session_id for s in sessions if any(x.event_type == "purchase" for x in s.interactions)}) == 138
    for s in sessions:
        ts = [x.ts for x in s.interactions]
        assert ts == sorted(ts)
    with_cat = sum(x.category_id is not None for s in sessions for x in s.interactions)
    assert with_cat / (views + purchases) > 0.95


@pytest.mark.data
@pytest.mark.skipif(not (REAL_DATA / "sequences" / "wikipedia.txt").exists(),
                    reason=f"shared data not found at {REAL_DATA / 'sequences'}")
def test_real_wikipedia_sequences():
    sessions = load_sasrec(REAL_DATA / "sequences" / "wikipedia.txt")
    assert len(sessions) == 8227
    assert sum(len(s.interactions) for s in sessions) == 157_474
