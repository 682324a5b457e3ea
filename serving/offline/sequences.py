"""Sessions -> index sequences, the SASRec leave-last-out split, the session-benchmark split,
training windows, negatives.

Leave-last-out (SASRec, Kang & McAuley 2018): for every user/session with >= 3 interactions,
the last item is the test target, the second-last the validation target and the rest is
training data; shorter sequences are training data only and are not evaluated.

Session benchmark (``session_split``; SR-GNN's DIGINETICA files): the training sessions are in
time order and every prefix of a session predicts its next item. Validation is carved from the
end of the training period (the last ``valid_fraction`` of the sessions, every prefix of each a
case, as the test file's), so parameters are chosen without the test file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from serving.model.artifacts import Vocab
from serving.model.transformer import EVENT_TYPE_INDEX
from serving.offline.data import Session


@dataclass
class Encoded:
    key: str
    items: np.ndarray  # int64 item indices (0 = unknown to the vocab)
    types: np.ndarray  # int64 event-type indices (1..4)


@dataclass
class EvalSet:
    """One row per evaluated user: the input history, the target, every item the user touched."""

    keys: list[str] = field(default_factory=list)
    items: list[np.ndarray] = field(default_factory=list)  # history item indices (chronological)
    types: list[np.ndarray] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    rated: list[np.ndarray] = field(default_factory=list)  # all of the user's items (history+valid+test)

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, idx) -> "EvalSet":
        idx = list(idx)
        return EvalSet([self.keys[i] for i in idx], [self.items[i] for i in idx], [self.types[i] for i in idx],
                       [self.targets[i] for i in idx], [self.rated[i] for i in idx])


@dataclass
class Split:
    train: list[Encoded]
    valid: EvalSet
    test: EvalSet
    train_counts: np.ndarray  # [n_items + 1] item counts in the training part
    # every sequence without its test item: the training part plus each validation target, for the
    # epochs after model selection (serving/offline/train.py, refit)
    refit: list[Encoded] = field(default_factory=list)


def encode(sessions: list[Session], vocab: Vocab) -> list[Encoded]:
    out = []
    for s in sessions:
        items = np.fromiter((vocab.encode_item(x.item_id) for x in s.interactions), dtype=np.int64,
                            count=len(s.interactions))
        types = np.fromiter((EVENT_TYPE_INDEX.get(x.event_type, 1) for x in s.interactions), dtype=np.int64,
                            count=len(s.interactions))
        out.append(Encoded(s.session_id, items, types))
    return out


def leave_last_out(users: list[Encoded], n_items: int) -> Split:
    train: list[Encoded] = []
    refit: list[Encoded] = []
    valid, test = EvalSet(), EvalSet()
    counts = np.zeros(n_items + 1, dtype=np.int64)
    for u in users:
        n = len(u.items)
        if n < 3:
            train.append(u)
            refit.append(u)
            np.add.at(counts, u.items, 1)
            continue
        tr = Encoded(u.key, u.items[:-2], u.types[:-2])
        train.append(tr)
        refit.append(Encoded(u.key, u.items[:-1], u.types[:-1]))
        np.add.at(counts, tr.items, 1)
        rated = np.unique(u.items)
        for ev, cut in ((valid, n - 2), (test, n - 1)):  # history before the target, the target
            ev.keys.append(u.key)
            ev.items.append(u.items[:cut])
            ev.types.append(u.types[:cut])
            ev.targets.append(int(u.items[cut]))
            ev.rated.append(rated)
    counts[0] = 0
    return Split(train, valid, test, counts, refit)


def build_vocab_and_split(sessions: list[Session], catalogue: Vocab | None = None
                          ) -> tuple[Vocab, list[Encoded], Split]:
    """Catalogue from every session (as SASRec) unless ``catalogue`` is given (a warm start keeps
    its model's), popularity from the training part only."""
    vocab = catalogue or Vocab.build(sessions)
    users = encode(sessions, vocab)
    split = leave_last_out(users, vocab.n_items)
    vocab = Vocab(vocab.items, vocab.categories, vocab.item_category, split.train_counts[1:].tolist())
    return vocab, users, split


def prefix_cases(seqs: list[np.ndarray], key: str = "s") -> EvalSet:
    """Every prefix of every sequence with the item after it (n - 1 cases for a sequence of n)."""
    ev = EvalSet()
    for r, s in enumerate(seqs):
        for cut in range(1, len(s)):
            ev.keys.append(f"{key}{r}:{cut}")
            ev.items.append(s[:cut])
            ev.types.append(np.ones(cut, dtype=np.int64))  # every benchmark event is a view (index 1)
            ev.targets.append(int(s[cut]))
            ev.rated.append(s[:cut])
    return ev


def session_split(train: list[np.ndarray], test_lines: list[np.ndarray], n_items: int,
                  valid_fraction: float = 0.1) -> Split:
    """The benchmark's split: ``train`` = the sessions before the last ``valid_fraction`` (in file
    order = time order), ``valid`` = every prefix of those last sessions, ``test`` = the test lines
    (prefix + target), ``refit`` = every training session (what the test figure is fit on)."""
    cut = len(train) - int(round(len(train) * valid_fraction))
    ones = [np.ones(len(s), dtype=np.int64) for s in train]
    encoded = [Encoded(f"s{r}", s, t) for r, (s, t) in enumerate(zip(train, ones))]
    test = EvalSet()
    for r, line in enumerate(test_lines):
        test.keys.append(f"t{r}")
        test.items.append(line[:-1])
        test.types.append(np.ones(len(line) - 1, dtype=np.int64))
        test.targets.append(int(line[-1]))
        test.rated.append(line[:-1])
    fit = encoded[:cut]
    return Split(fit, prefix_cases(train[cut:], key="v"), test, item_counts(fit, n_items), encoded)


def pad_left(seqs: list[np.ndarray], length: int) -> np.ndarray:
    """Stack the last ``length`` entries of each sequence, left-padded with 0."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for r, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[r, length - len(s):] = s
    return out


def training_windows(train: list[Encoded], max_len: int, all_windows: bool = True,
                     context: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, types, targets) [N, max_len], left-padded; targets[t] = next item after inputs[t].

    A sequence s of length n gives inputs s[:-1] and targets s[1:]. Longer than max_len + 1:
    cut into windows from the end (``all_windows``) or keep only the last one (as SASRec).
    With ``context`` > 0, each earlier window reaches ``context`` items into the next one and
    those targets are masked there, so every target is trained once but the first targets of
    a window still see ``context`` items of history. Padded and masked targets are 0 (no loss).
    """
    inp, typ, tgt = [], [], []
    for u in train:
        n = len(u.items)
        end, covered_from = n, n  # targets at indices >= covered_from are in a later window
        while end >= 2:
            start = max(0, end - 1 - max_len)
            targets = u.items[start + 1:end].copy()
            targets[max(0, covered_from - start - 1):] = 0
            inp.append(u.items[start:end - 1])
            typ.append(u.types[start:end - 1])
            tgt.append(targets)
            if not all_windows or start == 0:
                break
            covered_from = start + 1
            end = start + 1 + min(context, max_len - 1)
    return pad_left(inp, max_len), pad_left(typ, max_len), pad_left(tgt, max_len)


def sample_negatives(rated: list[np.ndarray], n_items: int, n: int = 100, seed: int = 0) -> np.ndarray:
    """[U, n] negatives per user, uniform over items 1..n_items the user never interacted with.

    As the SASRec reference code: draw uniformly with replacement, reject the user's items.
    (If a user touched the whole catalogue, the remaining slots hold 0 = padding, which every
    scorer gives -inf.)
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((len(rated), n), dtype=np.int64)
    for r, seen in enumerate(rated):
        seen = np.asarray(seen)
        n_free = n_items - int(np.count_nonzero((seen >= 1) & (seen <= n_items)))
        if n_free <= 0:
            continue
        got: list[np.ndarray] = []
        have = 0
        while have < n:
            draw = rng.integers(1, n_items + 1, size=max(2 * (n - have), 16))
            draw = draw[~np.isin(draw, seen)]
            got.append(draw)
            have += len(draw)
        out[r] = np.concatenate(got)[:n]
    return out


def item_counts(seqs: list[Encoded], n_items: int) -> np.ndarray:
    """Training counts per item index (index 0, the padding, stays 0): the popular baseline's scores."""
    counts = np.zeros(n_items + 1, dtype=np.int64)
    for s in seqs:
        np.add.at(counts, s.items, 1)
    counts[0] = 0
    return counts
