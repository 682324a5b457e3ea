"""End-to-end learning checks: the model learns a deterministic cycle; the CLIs run."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from contract.settings import get_settings
from serving.model.artifacts import load_model_dir
from serving.model.transformer import ModelConfig
from serving.offline import train as train_module
from serving.offline.data import Interaction, Session
from serving.offline.evaluate import cli as evaluate_cli
from serving.offline.sequences import encode, leave_last_out, pad_left
from serving.offline.train import TrainConfig, train_model
from serving.offline.train import cli as train_cli


def cyclic_sessions(n_users=160, cycle=20, length=12):
    """User u views items (u + t) mod cycle + 1 for t = 0..length-1: the next item is a function
    of the current one."""
    out = []
    for u in range(n_users):
        items = [str((u + t) % cycle + 1) for t in range(length)]
        out.append(Session(str(u), str(u), [Interaction(i, "view", t) for t, i in enumerate(items)]))
    return out


def test_model_learns_a_cycle_to_hr1():
    torch.set_num_threads(2)
    sessions = cyclic_sessions()
    cfg = TrainConfig(d_model=32, n_layers=1, n_heads=1, dropout=0.0, max_len=12, batch_size=32, lr=1e-2, epochs=12,
                      patience=12, max_minutes=2, device="cpu", seed=0)
    result = train_model(cfg, sessions, log=lambda *_: None)
    model, vocab = result.model, result.vocab
    sp = leave_last_out(encode(sessions, vocab), vocab.n_items)
    items = torch.from_numpy(pad_left(sp.test.items, 12))
    with torch.no_grad():
        pred = model.score_last(items, (items > 0).long()).argmax(1)
    hr1 = (pred == torch.tensor(sp.test.targets)).float().mean().item()  # argmax over the whole catalogue
    assert hr1 > 0.97, hr1
    test = result.summary.test
    assert test["sampled100"]["hr@5"] > 0.97 and test["full"]["ndcg@10"] > 0.95


@pytest.fixture
def own_run_dir(tmp_path, monkeypatch):
    """Versions are numbered above the retired ones (.run/retired): a run dir of this test's own."""
    monkeypatch.setenv("RECO_RUN_DIR", str(tmp_path / "run"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_train_and_evaluate_cli_then_publish(tmp_path, own_run_dir):
    """Train writes a model directory; the export entry point (serving.online.export publish, not
    the training CLI) makes it a version of the repository."""
    from serving.online.export import cli as export_cli
    from serving.online.export import versions

    out = tmp_path / "m"
    runner = CliRunner()
    r = runner.invoke(train_cli, ["--format", "synthetic", "--sessions", "300", "--out", str(out), "--epochs", "2",
                                  "--d-model", "16", "--n-layers", "1", "--device", "cpu", "--no-progress"])
    assert r.exit_code == 0, r.output
    refused = runner.invoke(train_cli, ["--format", "synthetic", "--out", str(out), "--export", str(tmp_path)])
    assert refused.exit_code != 0 and "--export" in refused.output  # no second way into model_repo
    r = runner.invoke(export_cli, ["publish", str(out), "--repo", str(tmp_path / "repo")])
    assert r.exit_code == 0, r.output
    assert "as version 1" in r.output
    assert versions(tmp_path / "repo" / get_settings().model_name) == [1]
    model, vocab = load_model_dir(out)
    assert model.cfg.n_categories == vocab.n_categories > 0
    assert json.loads((out / "config.json").read_text())["training"]["epochs_run"] == 2

    keys = {"hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr@10", "mrr@20", "coverage@10", "users"}
    for extra in (["--model", str(out)], ["--baseline", "popular"], ["--baseline", "itemknn"]):
        for protocol in ("sampled100", "full"):
            r = runner.invoke(evaluate_cli, ["--format", "synthetic", "--sessions", "300", "--protocol", protocol,
                                             *extra])
            assert r.exit_code == 0, r.output
            res = json.loads(r.output.strip().splitlines()[-1])
            assert keys <= set(res) and res["users"] > 100
            assert all(0.0 <= res[k] <= 1.0 for k in keys - {"users"})


def test_copy_head_learns_to_repeat_item_pairs_it_never_saw():
    """Sessions a b a b a b ... over a 2,000-item catalogue: the next item is the one two steps
    back. Tested on pairs (a, b) that never occurred together in training: only copying from
    the session gets them right (the plain tied dot product does not)."""
    rng = np.random.default_rng(0)
    pairs = [tuple(rng.choice(np.arange(1, 2001), 2, replace=False)) for _ in range(400)]
    train = [Session(f"u{u}", None, [Interaction(str(i), "view", t) for t, i in enumerate([a, b] * 4)])
             for u, (a, b) in enumerate(pairs)]
    seen = {frozenset((str(a), str(b))) for a, b in pairs}
    hr1 = {}
    for copy_head in (True, False):
        cfg = TrainConfig(d_model=32, n_layers=1, n_heads=1, dropout=0.0, max_len=8, batch_size=32, lr=1e-2, epochs=8,
                          patience=8, max_minutes=2, device="cpu", seed=0, test_eval=False, copy_head=copy_head)
        result = train_model(cfg, train, log=lambda *_: None)
        model, vocab = result.model, result.vocab
        r = np.random.default_rng(1)
        rows, targets = [], []
        while len(rows) < 200:
            a, b = r.choice(vocab.items, 2, replace=False)
            if frozenset((a, b)) not in seen:
                rows.append([vocab.encode_item(x) for x in [a, b, a, b, a]])
                targets.append(vocab.encode_item(b))
        items = torch.tensor(rows)
        with torch.no_grad():
            pred = model.score_last(items, torch.ones_like(items)).argmax(1)
        hr1[copy_head] = (pred == torch.tensor(targets)).float().mean().item()
    assert hr1[True] > 0.9, hr1
    assert hr1[True] > hr1[False] + 0.15, hr1


def test_train_config_has_one_set_of_defaults():
    """The architecture defaults are ModelConfig's; the CLI's defaults are TrainConfig's."""
    assert TrainConfig().model_config(10, 3) == ModelConfig(n_items=10, n_categories=3)
    assert TrainConfig(use_categories=False).model_config(10, 3).n_categories == 0
    assert TrainConfig.from_dict({"lr": 0.5, "out": "x"}) == TrainConfig(lr=0.5)


def test_cli_builds_the_train_config_whole(tmp_path, monkeypatch):
    seen = []

    def fake_train_model(cfg, sessions, out=None, **kw):
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(train_module, "train_model", fake_train_model)
    runner = CliRunner()
    base = ["--format", "synthetic", "--sessions", "20", "--out", str(tmp_path / "m")]
    assert runner.invoke(train_cli, base).exit_code == 0
    assert runner.invoke(train_cli, [*base, "--no-categories", "--no-copy-head", "--last-window", "--dropout", "0.1",
                                     "--threads", "1", "--val-users", "5"]).exit_code == 0
    assert seen == [TrainConfig(),
                    TrainConfig(use_categories=False, copy_head=False, all_windows=False, dropout=0.1, threads=1,
                                val_users=5)]



def test_the_selection_score_is_validation_ndcg_under_the_chosen_protocol():
    import pytest

    from serving.offline.data import generate_synthetic
    from serving.offline.sequences import build_vocab_and_split

    vocab, _, split = build_vocab_and_split(generate_synthetic(300, n_items=200, n_categories=5, mean_len=6, seed=3))
    torch.manual_seed(0)
    cfg = TrainConfig(d_model=16, n_layers=1, n_heads=1)
    model = train_module.build_model(cfg, vocab, torch.device("cpu")).eval()
    scores = {}
    for protocol in ("full", "sampled100"):
        scores[protocol], row = train_module.validate(model, torch.device("cpu"), split.valid, vocab.n_items,
                                                      0, protocol)
        assert scores[protocol] == pytest.approx(row[f"val_ndcg@10_{protocol}"], abs=5e-5)
    assert scores["full"] != scores["sampled100"]
    with pytest.raises(ValueError, match="select_protocol"):
        TrainConfig(select_protocol="served")


def test_the_selected_epoch_is_refit_on_the_validation_targets_too(monkeypatch):
    """The refit epochs train on Split.refit (validation targets in, test targets out) and are
    recorded; with refit_epochs 0 the saved weights are the best epoch's."""
    from serving.offline.data import generate_synthetic

    sessions = generate_synthetic(200, n_items=100, n_categories=5, mean_len=6, seed=3)
    built = []
    build = train_module.Windows.build.__func__

    def spy(cls, train, cfg):
        built.append(sum(len(u.items) for u in train))
        return build(cls, train, cfg)

    monkeypatch.setattr(train_module.Windows, "build", classmethod(spy))
    base = TrainConfig(d_model=16, n_layers=1, n_heads=1, epochs=2, device="cpu", seed=0, test_eval=False)
    refit = train_model(replace(base, refit_epochs=2), sessions, log=lambda *_: None)
    plain = train_model(replace(base, refit_epochs=0), sessions, log=lambda *_: None)
    evaluated = sum(1 for s in sessions if len(s.interactions) >= 3)
    assert built[1] == built[0] + evaluated and len(built) == 3  # the refit part: one more item per evaluated user
    assert [r["refit_epoch"] for r in refit.summary.refit] == [1, 2] and plain.summary.refit == []
    changed = [not torch.equal(a, b) for a, b in zip(refit.model.state_dict().values(),
                                                     plain.model.state_dict().values())]
    assert any(changed)


def test_the_refit_count_is_chosen_without_the_test_items(monkeypatch, tmp_path):
    """choose_refit_epochs trains on every sequence without its last (test) item and scores the
    validation item as the pseudo-test after each refit epoch; the CLI then trains with the chosen
    count and records how it was chosen."""
    from serving.offline.data import generate_synthetic

    sessions = generate_synthetic(200, n_items=100, n_categories=5, mean_len=6, seed=3)
    seen = []
    real_train_model = train_module.train_model

    def spy(cfg, sess, *args, **kwargs):
        seen.append((cfg.refit_epochs, [s.items for s in sess]))
        return real_train_model(cfg, sess, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_model", spy)
    cfg = TrainConfig(d_model=16, n_layers=1, n_heads=1, epochs=2, device="cpu", seed=0)
    choice = train_module.choose_refit_epochs(cfg, sessions, 3, log=lambda *_: None)
    assert seen == [(0, [s.items[:-1] for s in sessions])]
    assert [r["refit_epoch"] for r in choice["curve"]] == [0, 1, 2, 3]
    best = max(r["pseudo_test_ndcg@10"] for r in choice["curve"])
    assert choice["refit_epochs"] == min(r["refit_epoch"] for r in choice["curve"] if r["pseudo_test_ndcg@10"] == best)

    monkeypatch.setattr(train_module, "load", lambda *a, **k: sessions)
    out = tmp_path / "m"
    res = CliRunner().invoke(train_cli, ["--format", "synthetic", "--out", str(out), "--choose-refit", "2",
                                         "--epochs", "2", "--d-model", "16", "--n-layers", "1", "--n-heads", "1",
                                         "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["hyperparameters"]["refit_epochs"] == training["refit_choice"]["refit_epochs"]
    assert len(training["refit"]) == training["refit_choice"]["refit_epochs"]
    assert seen[-1][1] == [s.items for s in sessions]  # the real run sees the whole sequences
