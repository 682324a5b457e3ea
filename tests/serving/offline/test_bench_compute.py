"""The compute floor's inputs: prefixes as long as the sessions they are drawn from."""
from collections import Counter

from serving.model.artifacts import Vocab
from serving.offline.bench_compute import event_prefixes, session_lengths
from serving.offline.data import generate_synthetic


def _prefix_lengths(lengths: list[int] | None) -> Counter[int]:
    sessions = generate_synthetic(300, n_items=100, seed=0)
    items, _ = event_prefixes(sessions, Vocab.build(sessions), max_len=20, n=3000, seed=0, lengths=lengths)
    return Counter((items != 0).sum(1).tolist())


def test_prefixes_follow_the_given_session_lengths_event_by_event():
    # Sessions of 1 and 3 events: 4 events, prefix lengths 1, 1, 2, 3 -> half of them 1.
    counts = _prefix_lengths([1, 3])
    assert set(counts) == {1, 2, 3}
    assert abs(counts[1] / 3000 - 0.5) < 0.04 and abs(counts[3] / 3000 - 0.25) < 0.04


def test_without_lengths_prefixes_come_from_the_synthetic_sessions():
    assert max(_prefix_lengths(None)) > 3


def test_session_lengths_counts_views_per_session(tmp_path):
    views = tmp_path / "views.csv"
    views.write_text("session_id;user_id;item_id;timeframe;eventdate\n"
                     "1;NA;5;1;2016-05-09\n1;NA;6;2;2016-05-09\n2;NA;5;1;2016-05-09\n")
    assert sorted(session_lengths(views)) == [1, 2]
