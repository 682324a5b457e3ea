"""serving.retrain: events -> sessions, the warm start, the gate, publication and the decision log.

One tiny serving model (d_model 16, trained on 800 seeded synthetic sessions) and one stream of
1,500 later sessions of the same catalogue; everything is written under tmp_path.
"""
import json
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from kafka import TopicPartition
from typer.testing import CliRunner

from contract.settings import Settings, get_settings
from serving.model.artifacts import expanded, load_model_dir
from serving.offline.data import generate_synthetic
from serving.offline.train import TrainConfig, train_model
from serving.online.export import export_model, retire_newest, retired_dir, served_catalogue, versions
from serving.retrain import (
    RetrainOptions,
    build_sessions,
    cli,
    in_item_space,
    parse_messages,
    parse_since,
    read_jsonl,
    read_topic,
    retrain,
    split_by_time,
)
from tools.produce import session_events

TINY = dict(d_model=16, n_layers=1, n_heads=1, dropout=0.1, max_len=20, device="cpu", threads=1, test_eval=False)
CATALOGUE = dict(n_items=300, n_categories=10, seed=0)  # the same seed: the same items and item graph
BRIEF = TrainConfig(**TINY, epochs=5, patience=3, lr=1e-3)  # a warm start's few epochs


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def serving_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serving") / "model"
    train_model(TrainConfig(**TINY, epochs=15, patience=15, lr=5e-3), generate_synthetic(800, **CATALOGUE), out,
                log=quiet)
    return out


@pytest.fixture(scope="module")
def stream_lines() -> list[bytes]:
    """1,500 later sessions as the site would send them; user ids marked to check none is written."""
    events = session_events(generate_synthetic(1500, **CATALOGUE), stamp_now=False, prefix="secret-session-")
    return [event.model_copy(update={"user_id": event.user_id and f"secret-user-{event.user_id}"})
            .model_dump_json().encode() for event in events]


@pytest.fixture
def settings(tmp_path, serving_dir) -> Settings:
    """A repository whose one version (1) is the serving model."""
    out = Settings(run_dir=tmp_path / "run", model_repo=tmp_path / "repo")
    assert export_model(serving_dir, out.model_repo, retired=retired_dir(out.model_name, out)) == 1
    return out


def messages(lines: list[bytes]):
    return (((0, n), line) for n, line in enumerate(lines))


def decisions(settings: Settings) -> list[dict]:
    path = settings.run_dir / "retrain" / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def event(event_id, session, item, ts, event_type="view", user=None) -> bytes:
    return json.dumps({"event_id": event_id, "event_type": event_type, "session_id": session, "user_id": user,
                       "item_id": item, "ts": ts, "category_id": "c1"}).encode()


# ----------------------------------------------------------------------------- events -> sessions
def test_an_events_file_becomes_sessions_ordered_by_time_then_log_position(tmp_path):
    lines = [
        event("a1", "A", "i1", 1000, user="u1"),
        b"not json",
        event("b1", "B", "i5", 500),
        event("a3", "A", "i3", 3000, "add_to_cart"),
        event("a2", "A", "i2", 2000, "click"),
        json.dumps({"event_type": "wishlist"}).encode(),
        event("a1", "A", "i1", 1000, user="u1"),  # a producer's retry
        event("b2", "B", "i6", 500, "click"),  # same ts as b1: the log order decides
        b'{"event_id": "x", "event_type": "view", "session_id": "C", "item_id": "i1", "ts": "9"}',
        b"",
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    parsed = parse_messages(read_jsonl(path), max_bytes=10_000)
    assert dict(parsed.invalid) == {"not_json": 1, "unknown_event_type": 1, "invalid_schema": 1}
    assert parsed.duplicates == 1
    sessions = build_sessions(parsed.events)
    assert [[(x.item_id, x.event_type, x.ts) for x in s.interactions] for s in sessions] == [
        [("i1", "view", 1000), ("i2", "click", 2000), ("i3", "add_to_cart", 3000)],
        [("i5", "view", 500), ("i6", "click", 500)]]
    assert [(s.session_id, s.user_id) for s in sessions] == [("1", None), ("2", None)]  # no id kept


def test_the_latest_sessions_by_last_event_are_held_out(tmp_path):
    lines = [event(f"{s}-{t}", s, "i1", ts) for s, t, ts in
             (("A", 0, 100), ("B", 0, 50), ("A", 1, 900), ("C", 0, 300), ("D", 0, 400), ("B", 1, 700))]
    sessions = build_sessions(parse_messages(messages(lines), 10_000).events)
    train, holdout = split_by_time(sessions, 0.5)
    assert [s.interactions[-1].ts for s in train] == [300, 400]
    assert [s.interactions[-1].ts for s in holdout] == [700, 900]


def test_since_takes_epoch_milliseconds_or_iso_8601():
    assert parse_since("1764136800000") == 1_764_136_800_000
    assert parse_since("2025-11-26T06:00:00Z") == parse_since("2025-11-26T06:00:00") == 1_764_136_800_000
    assert parse_since("2025-11-26T07:00:00+01:00") == 1_764_136_800_000


Record = namedtuple("Record", "offset value")
Found = namedtuple("Found", "offset timestamp")


class FakeConsumer:
    """The KafkaConsumer calls read_topic makes, over two partitions of (ts, value) records; a
    record produced after the end offsets were taken arrives with the first poll."""

    def __init__(self, logs: dict[int, list[tuple[int, bytes]]], late: dict[int, bytes]):
        self.logs, self.late = logs, late
        self.ends = {TopicPartition("events", p): len(log) for p, log in logs.items()}
        self.positions: dict = {}
        self.paused: set = set()

    def partitions_for_topic(self, topic):
        return set(self.logs) if topic == "events" else None

    def assign(self, partitions):
        self.positions = {tp: 0 for tp in partitions}

    def end_offsets(self, partitions):
        ends = {tp: self.ends[tp] for tp in partitions}
        for partition, value in self.late.items():
            self.logs[partition].append((10**15, value))
        return ends

    def seek_to_beginning(self, *partitions):
        for tp in partitions:
            self.positions[tp] = 0

    def offsets_for_times(self, times):
        return {tp: next((Found(n, ts) for n, (ts, _) in enumerate(self.logs[tp.partition]) if ts >= since), None)
                for tp, since in times.items()}

    def seek(self, tp, offset):
        self.positions[tp] = offset

    def position(self, tp):
        return self.positions[tp]

    def poll(self, timeout_ms):
        out = {}
        for tp, at in self.positions.items():
            log = self.logs[tp.partition]
            if tp not in self.paused and at < len(log):
                out[tp] = [Record(n, log[n][1]) for n in range(at, min(at + 2, len(log)))]
                self.positions[tp] = out[tp][-1].offset + 1
        return out

    def pause(self, *partitions):
        self.paused |= set(partitions)


def test_the_topic_is_read_from_a_time_up_to_the_end_offsets_taken_at_start():
    def consumer():
        return FakeConsumer({0: [(10, b"a"), (20, b"b"), (30, b"c")], 1: [(15, b"d"), (25, b"e")]},
                            late={0: b"late", 1: b"late"})

    assert sorted(read_topic(consumer(), "events", None)) == [
        ((0, 0), b"a"), ((0, 1), b"b"), ((0, 2), b"c"), ((1, 0), b"d"), ((1, 1), b"e")]
    assert sorted(read_topic(consumer(), "events", 20)) == [((0, 1), b"b"), ((0, 2), b"c"), ((1, 1), b"e")]
    assert list(read_topic(consumer(), "events", 99)) == []
    with pytest.raises(ValueError, match="does not exist"):
        list(read_topic(consumer(), "evnets", None))


# ----------------------------------------------------------------------------- warm start
def test_a_warm_start_appends_new_items_and_keeps_every_known_row(serving_dir, stream_lines):
    model, vocab = load_model_dir(serving_dir)
    sessions = build_sessions(parse_messages(messages(stream_lines), 10_000).events)
    catalogue = vocab.extended(sessions)
    added = catalogue.items[vocab.n_items:]
    assert catalogue.items[:vocab.n_items] == vocab.items and added
    assert not set(added) & set(vocab.items)
    assert catalogue.categories[:vocab.n_categories] == vocab.categories
    torch.manual_seed(0)
    grown = expanded(model, vocab, catalogue)
    assert grown.cfg == type(model.cfg)(**{**model.cfg.to_dict(), "n_items": catalogue.n_items,
                                           "n_categories": catalogue.n_categories})
    old, new = model.state_dict(), grown.state_dict()
    assert set(old) == set(new)
    for name in set(old) - {"item_emb.weight", "cat_emb.weight", "item_category"}:
        assert torch.equal(old[name], new[name]), name
    n = vocab.n_items + 1
    assert torch.equal(new["item_emb.weight"][:n], old["item_emb.weight"])
    assert torch.equal(new["item_category"][:n], old["item_category"])
    assert torch.equal(new["cat_emb.weight"][:vocab.n_categories + 1], old["cat_emb.weight"])
    fresh = new["item_emb.weight"][n:]
    assert 0.01 < float(fresh.std()) < 0.03  # initialised as the model does (normal, std 0.02), not zero
    # so a session of known items has the same hidden states
    items = torch.tensor([[0, 3, 7, 7, 12]])
    types = torch.tensor([[0, 1, 1, 2, 1]])
    with torch.no_grad():
        assert torch.allclose(model(items, types), grown.eval()(items, types), atol=1e-6)


def test_the_serving_model_is_scored_in_the_candidate_item_space(serving_dir, stream_lines):
    model, vocab = load_model_dir(serving_dir)
    catalogue = vocab.extended(build_sessions(parse_messages(messages(stream_lines), 10_000).events))
    new_item = vocab.n_items + 1  # unknown to the serving model
    score = in_item_space(model, vocab, catalogue)
    with torch.no_grad():
        own = model.score_last(torch.tensor([[0, 0, 3, 9]]), torch.tensor([[0, 0, 1, 2]]))
    mapped = score(torch.tensor([[0, 3, new_item, 9]]), torch.tensor([[0, 1, 1, 2]]))
    assert mapped.shape == (1, catalogue.n_items + 1)
    assert torch.allclose(mapped[:, :vocab.n_items + 1], own)  # the unknown item is dropped from the history
    assert torch.isneginf(mapped[:, vocab.n_items + 1:]).all()


# ----------------------------------------------------------------------------- the gate
def test_a_candidate_made_worse_on_purpose_is_refused_and_nothing_is_exported(settings, stream_lines):
    untrained = TrainConfig(**TINY, epochs=1, lr=1e-6, refit_epochs=0)  # from scratch, one step-size-free epoch
    decision = retrain(messages(stream_lines), settings, RetrainOptions(mode="scratch"), untrained, "test", quiet)
    assert decision["decision"] == "refused", decision["reason"]
    assert decision["candidate"]["served"]["ndcg@10"] < decision["serving"]["served"]["ndcg@10"] - 0.05
    assert decision["difference"]["mean"] < -0.05
    assert versions(settings.model_repo / settings.model_name) == [1]
    assert decisions(settings) == [decision]
    assert decision["serving_version"] == 1 and decision["published_version"] is None
    assert decision["events"] == len(stream_lines) and decision["invalid_events"] == 0
    assert decision["sessions"] == 1500 and decision["holdout_sessions"] == 300
    assert decision["evaluated_sessions"] >= 100 and decision["new_items"] > 0


def test_a_warm_candidate_is_published_rolled_back_and_numbering_stays_monotonic(settings, stream_lines, tmp_path):
    first = retrain(messages(stream_lines), settings, RetrainOptions(), BRIEF, "test", quiet)
    assert first["decision"] == "published", first["reason"]
    assert first["mode"] == "warm" and first["published_version"] == 2
    assert first["candidate"]["served"]["ndcg@10"] >= first["serving"]["served"]["ndcg@10"]
    for name in ("candidate", "serving"):
        assert set(first[name]) == {"sampled100", "full", "served"}
    target = settings.model_repo / settings.model_name
    assert versions(target) == [1, 2]
    model, vocab = load_model_dir(target / "2")
    assert vocab.n_items == first["items"] == model.cfg.n_items > load_model_dir(target / "1")[1].n_items
    assert served_catalogue(target) == settings.catalogue  # the stream it learned from is the site's

    assert retire_newest(target, retired_dir(settings.model_name, settings)) == (2, 1)
    again = retrain(messages(stream_lines), settings, RetrainOptions(), BRIEF, "test", quiet)
    assert again["serving_version"] == 1 and again["published_version"] == 3
    assert versions(target) == [1, 3]
    assert [d["published_version"] for d in decisions(settings)] == [2, 3]
    # privacy: no session or user id in any file written
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in written if b"secret-" in p.read_bytes()]


def test_a_dry_run_decides_but_exports_nothing(settings, stream_lines):
    decision = retrain(messages(stream_lines), settings, RetrainOptions(dry_run=True), BRIEF, "test", quiet)
    assert decision["decision"] == "would_publish" and decision["dry_run"]
    assert versions(settings.model_repo / settings.model_name) == [1]


def test_a_held_out_window_too_small_is_refused_before_training(settings, stream_lines):
    decision = retrain(messages(stream_lines), settings, RetrainOptions(min_holdout=1000), BRIEF, "test", quiet)
    assert decision["decision"] == "refused"
    assert decision["reason"].startswith("held-out window too small")
    assert "candidate" not in decision and decisions(settings) == [decision]


def test_with_no_version_only_first_publishes_and_it_is_ungated(tmp_path, stream_lines):
    settings = Settings(run_dir=tmp_path / "run", model_repo=tmp_path / "repo")
    refused = retrain(messages(stream_lines), settings, RetrainOptions(), BRIEF, "test", quiet)
    assert refused["decision"] == "refused" and "--first" in refused["reason"]
    first = retrain(messages(stream_lines), settings, RetrainOptions(first=True), BRIEF, "test", quiet)
    assert first["decision"] == "published" and first["published_version"] == 1
    assert first["mode"] == "scratch" and "without a gate" in first["reason"]
    assert "serving" not in first and first["candidate"]["served"]["users"] > 0


def test_cli_dry_run_from_an_events_file(settings, stream_lines, tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(stream_lines + [b"{}"]) + b"\n")
    monkeypatch.setenv("RECO_RUN_DIR", str(settings.run_dir))
    monkeypatch.setenv("RECO_MODEL_REPO", str(settings.model_repo))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["--events-file", str(path), "--dry-run", "--epochs", "1", "--device", "cpu",
                                          "--threads", "1"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    (decision,) = decisions(settings)
    assert decision["invalid_events"] == 1 and decision["dry_run"] and decision["source"] == str(path)
    assert result.output.splitlines()[-1].startswith(f"{decision['decision']}: {decision['reason']}")
    assert versions(settings.model_repo / settings.model_name) == [1]
    assert CliRunner().invoke(cli, ["--dry-run"]).exit_code != 0  # no source given
