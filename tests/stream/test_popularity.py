"""Live popularity: all-time top items and a decayed trending set."""
from stream.popularity import Popularity

MINUTE = 60_000


def test_top_follows_the_latest_total_counts():
    pop = Popularity(top_n=3)
    for item, count in (("a", 5), ("b", 9), ("c", 1), ("d", 7)):
        pop.observe(item, count, ts=0)
    pop.refresh()
    assert pop.top(3) == ["b", "d", "a"]
    assert pop.is_popular("a") and not pop.is_popular("c")


def test_trending_is_what_is_hot_now_but_not_already_the_most_popular():
    pop = Popularity(top_n=5, half_life_ms=MINUTE)
    for n in range(50):  # an old best-seller
        pop.observe("old", 100 + n, ts=n)
    for n in range(5):  # a burst an hour later
        pop.observe("new", n + 1, ts=60 * MINUTE + n)
    pop.refresh()
    assert pop.is_trending("new") and not pop.is_trending("old")
