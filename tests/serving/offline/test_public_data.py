"""MovieLens conversion to SASRec text format (serving/offline/public_data.py) on hand-made rows."""
from serving.offline.public_data import ratings_to_sasrec, read_recbole_inter


def test_five_core_filter_renumbering_and_chronological_order():
    rows = [("u4", "e", 1)]  # first line of the file: u4 -> user 1, e -> item 1
    rows += [(f"u{k}", i, 100 + t) for k in range(5) for t, i in enumerate("abcde")]
    rows += [("once", "a", 5), ("u0", "rare", 1)]  # a user and an item with one rating: dropped
    pairs = ratings_to_sasrec(rows)
    by_user = {u: [i for v, i in pairs if v == u] for u in {u for u, _ in pairs}}
    assert sorted(by_user) == [1, 2, 3, 4, 5]
    assert by_user[1] == [1, 2, 3, 4, 5, 1]  # u4: e (t=1) first, then a..e by time
    assert by_user[2] == [2, 3, 4, 5, 1]  # u0: the rare item is gone
    assert len(pairs) == 26


def test_equal_timestamps_keep_file_order():
    rows = [("u", i, 7) for i in "zyxwv"] + [(f"o{k}", i, 0) for k in range(4) for i in "zyxwv"]
    assert [i for u, i in ratings_to_sasrec(rows) if u == 1] == [1, 2, 3, 4, 5]


def test_recbole_atomic_file_columns():
    text = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n"
    assert read_recbole_inter(text) == [("196", "242", 881250949)]
