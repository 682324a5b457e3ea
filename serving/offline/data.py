"""Session data: the dataset loaders and a synthetic generator (the types: serving.model.sessions).

Every loader but the session benchmark's returns ``list[Session]``; each session's interactions
are in chronological order. Four sources:

* ``load_sasrec(path)``: the public SASRec benchmark text format (``user item`` per line,
  each user's lines in chronological order). One user = one session, every event a 'view'.
* ``load_diginetica(dir)``: the CIKM Cup 2016 DIGINETICA files (views + purchases +
  categories), read in place from ``../shared/data/diginetica``.
* ``generate_synthetic(n)``: realistic e-commerce sessions with learnable structure.
* ``load_session_benchmark(dir)``: the session-based benchmark files (``train.txt``, ``test.txt``:
  one sequence of integer item ids per line, e.g. ``../shared/data/sessions/diginetica-srgnn``),
  kept as id arrays: the ids are already the catalogue's indices, and the split is the files'.
"""
from __future__ import annotations

from bisect import bisect
from collections import defaultdict
from pathlib import Path

import numpy as np

from contract.settings import PROJECT_ROOT
from serving.model.sessions import Interaction, Session, id_sort_key

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


# ----------------------------------------------------------------------------- SASRec format
def load_sasrec(path: str | Path) -> list[Session]:
    """``user item`` per line, each user's lines chronological, ids from 1.

    One Session per user (``session_id = user_id = user``), events are 'view' and
    ``ts`` is the line index (monotone within a user). Sessions are ordered by user id.
    """
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{path}:{line_no + 1}: expected 'user item', got {line!r}")
            user, item = parts[0], parts[1]
            by_user[user].append(Interaction(item_id=item, event_type="view", ts=line_no))
    return [Session(session_id=u, user_id=u, interactions=by_user[u]) for u in sorted(by_user, key=id_sort_key)]


# ----------------------------------------------------------------------------- DIGINETICA
def _day_to_epoch_ms(days) -> np.ndarray:
    import pandas as pd

    return (pd.to_datetime(days, format="%Y-%m-%d", utc=True).astype("int64") // 1_000_000).to_numpy()


def load_diginetica(directory: str | Path, views_file: str = "train-item-views.sample.csv") -> list[Session]:
    """DIGINETICA views (+ purchases of the same sessions, + item categories) as sessions.

    ``ts = epoch ms of eventdate (UTC midnight) + timeframe``. Purchases from
    ``train-purchases.csv`` whose session is in the views file become 'purchase' events,
    merged in time order (a view and a purchase at the same ts: the view comes first).
    Sessions are ordered by session id; ``user_id`` is None for ``NA``.
    """
    import pandas as pd

    d = Path(directory)
    views = pd.read_csv(d / views_file, sep=";", dtype={"session_id": str, "user_id": str, "item_id": str},
                        keep_default_na=False)
    views["ts"] = _day_to_epoch_ms(views["eventdate"]) + views["timeframe"].astype("int64").to_numpy()
    views["event_type"] = "view"
    views["kind"] = 0
    frames = [views[["session_id", "user_id", "item_id", "ts", "event_type", "kind"]]]

    purchases_path = d / "train-purchases.csv"
    if purchases_path.exists():
        p = pd.read_csv(purchases_path, sep=";", dtype={"sessionId": str, "userId": str, "itemId": str},
                        keep_default_na=False)
        p = p[p["sessionId"].isin(set(views["session_id"]))]
        if len(p):
            p = p.rename(columns={"sessionId": "session_id", "userId": "user_id", "itemId": "item_id"})
            p["ts"] = _day_to_epoch_ms(p["eventdate"]) + p["timeframe"].astype("int64").to_numpy()
            p["event_type"] = "purchase"
            p["kind"] = 1
            frames.append(p[["session_id", "user_id", "item_id", "ts", "event_type", "kind"]])

    ev = pd.concat(frames, ignore_index=True)
    ev["order"] = np.arange(len(ev))
    ev["sid_num"] = pd.to_numeric(ev["session_id"], errors="coerce")
    ev = ev.sort_values(["sid_num", "session_id", "ts", "kind", "order"], kind="stable")

    categories: dict[str, str] = {}
    cat_path = d / "product-categories.csv"
    if cat_path.exists():
        c = pd.read_csv(cat_path, sep=";", dtype=str, keep_default_na=False)
        categories = dict(zip(c["itemId"], c["categoryId"]))

    # The user id of a session: the first non-NA one among its views (purchases agree).
    sessions: dict[str, Session] = {}
    for sid, uid, item, ts, et in zip(ev["session_id"], ev["user_id"], ev["item_id"], ev["ts"], ev["event_type"]):
        s = sessions.get(sid)
        user = None if uid in ("", "NA") else uid
        if s is None:
            s = sessions[sid] = Session(session_id=sid, user_id=user, interactions=[])
        elif s.user_id is None and user is not None:
            s.user_id = user
        s.interactions.append(Interaction(item_id=item, event_type=et, ts=int(ts), category_id=categories.get(item)))
    return list(sessions.values())


# ----------------------------------------------------------------------------- session benchmark
def read_id_lines(path: str | Path) -> list[np.ndarray]:
    """One int64 array per non-empty line of space-separated item ids."""
    with open(path, encoding="utf-8") as fh:
        return [np.array(line.split(), dtype=np.int64) for line in fh if line.strip()]


def load_session_benchmark(directory: str | Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(training sessions in time order, test lines = prefix followed by the target)."""
    d = Path(directory)
    return read_id_lines(d / "train.txt"), read_id_lines(d / "test.txt")


def benchmark_test_sessions(test_lines: list[np.ndarray]) -> list[np.ndarray]:
    """The test sessions the benchmark's test lines were cut from: each session's lines come
    together, longest first (the whole session), every next one a line shorter, so a line starts
    a new session unless it is the previous line without its last item. The sessions' prefixes
    are exactly the test cases (serving.offline.sequences.prefix_cases), in another order."""
    sessions: list[np.ndarray] = []
    for previous, line in zip([None, *test_lines], test_lines):
        if previous is None or len(line) != len(previous) - 1 or not np.array_equal(line, previous[:-1]):
            sessions.append(line)
    return sessions


def load_benchmark_test_sessions(directory: str | Path, start_ms: int = 1_700_000_000_000) -> list[Session]:
    """The session benchmark's test sessions as events to replay (tools.produce --source
    sessions): every event a view; session ``t{n}`` starts n seconds after ``start_ms`` and has an
    event every 30 s, so replayed sessions overlap as on a live site."""
    _, test_lines = load_session_benchmark(directory)
    return [Session(f"t{n}", None, [Interaction(str(item), "view", start_ms + n * 1000 + k * 30_000)
                                    for k, item in enumerate(items.tolist())])
            for n, items in enumerate(benchmark_test_sessions(test_lines))]


# ----------------------------------------------------------------------------- synthetic
def generate_synthetic(
    n_sessions: int,
    n_items: int = 2000,
    n_categories: int = 40,
    seed: int = 0,
    mean_len: float = 8.0,
    zipf_a: float = 0.9,
    n_neighbors: int = 6,
    user_fraction: float = 0.4,
    start_ms: int = 1_704_067_200_000,  # 2024-01-01T00:00Z
) -> list[Session]:
    """Realistic-looking e-commerce sessions with structure a sequence model can learn.

    * Items have Zipf popularity (exponent ``zipf_a``, randomly permuted over ids ``i1..iN``),
      belong to one of ``n_categories`` categories (Zipf-sized), and have a price drawn
      around a per-category log-normal base price.
    * A hidden 'complementary item' graph: each item has ``n_neighbors`` successors, mostly in
      its own category, some in one 'related' category; popular items are likelier successors.
    * A session has an intent category (returning users mostly keep their favourite ones).
      Browsing is a walk: the next viewed item follows the graph (p≈0.55), is a popular item
      of the intent category (p≈0.3), a revisit of an earlier item (p≈0.05) or a random
      popular item (the rest).
    * Funnel per viewed item: click (p≈0.3), then add_to_cart (p≈0.25 of clicks, more for
      cheap items); at the end, each carted item is purchased with p≈0.55.
    * Time: sessions start uniformly over 30 days; gaps are log-normal (median ≈ 25 s,
      shorter inside the funnel). ``user_fraction`` of sessions belong to returning users.

    Deterministic in ``seed``.
    """
    rng = np.random.default_rng(seed)
    n_items = int(n_items)
    n_categories = max(1, min(int(n_categories), n_items))
    item_ids = [f"i{k}" for k in range(1, n_items + 1)]
    cat_ids = [f"c{k}" for k in range(1, n_categories + 1)]

    # Popularity: Zipf over a random permutation of the items.
    pop = 1.0 / np.arange(1, n_items + 1) ** zipf_a
    pop = pop[rng.permutation(n_items)]
    # Categories: Zipf-ish sizes, every category non-empty.
    cat_w = 1.0 / np.arange(1, n_categories + 1) ** 0.7
    extra_cat = rng.choice(n_categories, n_items - n_categories, p=cat_w / cat_w.sum())
    item_cat = np.concatenate([np.arange(n_categories), extra_cat])
    item_cat = item_cat[rng.permutation(n_items)]
    cat_items = [np.flatnonzero(item_cat == c) for c in range(n_categories)]
    cat_cum = [np.cumsum(pop[ix]) / pop[ix].sum() for ix in cat_items]
    cat_pop = np.array([pop[ix].sum() for ix in cat_items])
    glob_cum = np.cumsum(pop) / pop.sum()
    related = (np.arange(n_categories) + 1 + rng.integers(0, max(1, n_categories - 1), n_categories)) % n_categories
    base_price = np.exp(rng.normal(3.0, 1.0, n_categories))
    price = np.round(base_price[item_cat] * np.exp(rng.normal(0, 0.35, n_items)), 2).clip(0.5, None)

    # Complementary graph: neighbours drawn by popularity (sqrt-damped), mostly same category.
    soft = np.sqrt(pop)
    soft_cum = [np.cumsum(soft[ix]) / soft[ix].sum() for ix in cat_items]
    src = np.where(rng.random((n_items, n_neighbors)) < 0.75, item_cat[:, None], related[item_cat][:, None])
    uu = rng.random((n_items, n_neighbors))
    neigh = np.empty((n_items, n_neighbors), dtype=np.int64)
    for c in range(n_categories):
        m = src == c
        if m.any():
            pos = np.minimum(np.searchsorted(soft_cum[c], uu[m]), len(cat_items[c]) - 1)
            neigh[m] = cat_items[c][pos]
    neigh_cum = np.cumsum(0.6 ** np.arange(n_neighbors))
    neigh_cum = (neigh_cum / neigh_cum[-1]).tolist()

    n_users = max(1, int(n_sessions * user_fraction / 3))
    user_fav = rng.choice(n_categories, size=(n_users, 2), p=cat_pop / cat_pop.sum()).tolist()
    cat_cum_glob = (np.cumsum(cat_pop) / cat_pop.sum()).tolist()
    cat_items_l = [ix.tolist() for ix in cat_items]
    cat_cum_l = [cc.tolist() for cc in cat_cum]
    glob_cum_l = glob_cum.tolist()
    neigh_l = neigh.tolist()
    item_cat_l = item_cat.tolist()
    price_l = price.tolist()
    cheap = (price < base_price[item_cat]).tolist()
    cat_ids_of_item = [cat_ids[c] for c in item_cat_l]

    def pick_in(c: int, r: float) -> int:
        ix = cat_items_l[c]
        return ix[min(bisect(cat_cum_l[c], r), len(ix) - 1)]

    starts = (np.sort(rng.integers(0, 30 * 86_400_000, n_sessions)) + start_ms).tolist()
    lengths = np.clip(rng.geometric(1.0 / max(mean_len - 0.5, 1.0), n_sessions), 1, 60).tolist()
    has_user = (rng.random(n_sessions) < user_fraction).tolist()
    users = rng.integers(0, n_users, n_sessions).tolist()
    total = int(sum(lengths))
    U = rng.random(6 * total + 8 * n_sessions).tolist()  # every uniform the walk needs
    G = np.exp(rng.normal(10.1, 1.0, 4 * total + 4 * n_sessions)).astype(np.int64).tolist()  # gaps, ms
    k = g = 0

    sessions: list[Session] = []
    for s in range(n_sessions):
        n_views = lengths[s]
        uid = users[s] if has_user[s] else None
        if uid is not None and U[k] < 0.7:
            intent = user_fav[uid][0 if U[k + 1] < 0.65 else 1]
        else:
            intent = min(bisect(cat_cum_glob, U[k + 1]), n_categories - 1)
        k += 2
        ts = starts[s]
        cur = pick_in(intent, U[k])
        k += 1
        seen: list[int] = []
        cart: list[int] = []
        out: list[Interaction] = []
        for v in range(n_views):
            if v > 0:
                r = U[k]
                k += 1
                if r < 0.55:
                    cur = neigh_l[cur][min(bisect(neigh_cum, U[k]), n_neighbors - 1)]
                elif r < 0.85:
                    cur = pick_in(intent, U[k])
                elif r < 0.90 and seen:
                    cur = seen[int(U[k] * len(seen))]
                else:
                    cur = min(bisect(glob_cum_l, U[k]), n_items - 1)
                k += 1
            ts += G[g]
            g += 1
            it, ct, pr = item_ids[cur], cat_ids_of_item[cur], price_l[cur]
            out.append(Interaction(it, "view", ts, ct, pr))
            seen.append(cur)
            if U[k] < 0.3:  # click
                ts += G[g] // 4 + 500
                g += 1
                out.append(Interaction(it, "click", ts, ct, pr))
                if U[k + 1] < (0.375 if cheap[cur] else 0.25):
                    ts += G[g] // 3 + 800
                    g += 1
                    out.append(Interaction(it, "add_to_cart", ts, ct, pr))
                    cart.append(cur)
            k += 2
        for c in cart:
            if U[k] < 0.55:
                ts += 2_000 + int(U[k + 1] * 58_000)
                out.append(Interaction(item_ids[c], "purchase", ts, cat_ids_of_item[c], price_l[c]))
            k += 2
        user_id = None if uid is None else f"u{uid + 1}"
        sessions.append(Session(session_id=f"s{s + 1}", user_id=user_id, interactions=out))
    return sessions


def describe(sessions: list[Session]) -> dict:
    """Small summary used by the CLIs."""
    n = sum(len(s.interactions) for s in sessions)
    items = {x.item_id for s in sessions for x in s.interactions}
    return {
        "sessions": len(sessions),
        "interactions": n,
        "items": len(items),
        "avg_len": round(n / max(1, len(sessions)), 2),
    }


def load(data_format: str, data: str | Path | None = None, sessions: int = 10_000, seed: int = 0,
         **synthetic_kw) -> list[Session]:
    """Dispatch on ``data_format`` in {'sasrec', 'diginetica', 'synthetic'}."""
    data_format = data_format.lower()
    if data_format == "sasrec":
        if data is None:
            raise ValueError("--data is required for format sasrec")
        return load_sasrec(data)
    if data_format == "diginetica":
        return load_diginetica(data if data is not None else SHARED_DATA / "diginetica")
    if data_format == "synthetic":
        return generate_synthetic(sessions, seed=seed, **synthetic_kw)
    raise ValueError(f"unknown format {data_format!r} (sasrec | diginetica | synthetic)")

