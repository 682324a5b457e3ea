"""Exporting a model directory into a Triton repository as a new version."""
import pytest

from contract.settings import get_settings
from serving.online import export
from serving.online.export import export_model, versions

NAME = get_settings().model_name  # the model folder export_model writes by default


@pytest.fixture(autouse=True)
def no_run_dir(tmp_path, monkeypatch):
    """Versions retired by a running stack (RECO_RUN_DIR) must not renumber these repositories."""
    monkeypatch.setattr(export, "retired_dir", lambda model_name=None, settings=None:
                        tmp_path / "retired-default" / (model_name or NAME))


@pytest.fixture
def model_dir(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    for name in export.ARTIFACTS:
        (out / name).write_text(f"{name} contents")
    return out


def test_versions_are_numbered_complete_and_only_the_newest_kept(tmp_path, model_dir):
    repo = tmp_path / "repo"
    numbers = [export_model(model_dir, repo, "m") for _ in range(export.KEEP_VERSIONS + 2)]
    target = repo / "m"
    assert numbers == list(range(1, export.KEEP_VERSIONS + 3))
    assert versions(target) == numbers[-export.KEEP_VERSIONS:]
    assert sorted(p.name for p in target.iterdir()) == sorted(["config.pbtxt", *map(str, versions(target))])
    newest = target / str(numbers[-1])
    assert {p.name for p in newest.iterdir()} == {*export.ARTIFACTS, "model.py"}
    assert (newest / "model.py").read_text() == export.BACKEND.read_text()
    assert (newest / "weights.pt").read_text() == "weights.pt contents"
    config = (target / "config.pbtxt").read_text()
    assert 'name: "m"' in config and 'name: "session_transformer"' not in config


def test_a_failed_export_leaves_no_staging_folder_and_no_version(tmp_path, model_dir):
    repo = tmp_path / "repo"
    assert export_model(model_dir, repo) == 1
    (model_dir / "weights.pt").unlink()
    with pytest.raises(FileNotFoundError):
        export_model(model_dir, repo)
    target = repo / NAME
    assert versions(target) == [1]
    assert not [p for p in target.iterdir() if p.name.startswith(".")]


def test_a_stale_staging_folder_is_replaced(tmp_path, model_dir):
    target = tmp_path / "repo" / NAME
    (target / ".staging-1").mkdir(parents=True)
    (target / ".staging-1" / "half-written").write_text("")
    assert export_model(model_dir, tmp_path / "repo") == 1
    assert {p.name for p in (target / "1").iterdir()} == {*export.ARTIFACTS, "model.py"}
    assert not (target / ".staging-1").exists()


def test_rollback_retires_the_newest_and_its_number_is_never_reused(tmp_path, model_dir):
    repo, retired = tmp_path / "repo", tmp_path / "retired"
    assert [export_model(model_dir, repo, retired=retired) for _ in range(3)] == [1, 2, 3]
    target = repo / NAME
    assert export.retire_newest(target, retired) == (3, 2)
    assert versions(target) == [1, 2] and versions(retired) == [3]
    assert {p.name for p in (retired / "3").iterdir()} == {*export.ARTIFACTS, "model.py"}
    assert not [p for p in target.iterdir() if p.name.startswith(".")]
    assert export_model(model_dir, repo, retired=retired) == 4  # not 3: Triton caches by number
    assert export.retire_newest(target, retired) == (4, 2)
    assert export.retire_newest(target, retired) == (2, 1)
    with pytest.raises(export.RollbackRefused, match="only version 1"):
        export.retire_newest(target, retired)
    assert versions(target) == [1] and versions(retired) == [2, 3, 4]
    assert export_model(model_dir, repo, retired=retired) == 5


def test_the_precision_travels_in_the_model_config(tmp_path, model_dir):
    from serving.model.precision import DEFAULT_PRECISION

    repo = tmp_path / "repo"
    config = repo / NAME / "config.pbtxt"
    assert export.config_precision(export.CONFIG_TEMPLATE.read_text()) == DEFAULT_PRECISION
    assert export_model(model_dir, repo) == 1
    assert export.config_precision(config.read_text()) == DEFAULT_PRECISION  # from the template

    assert export_model(model_dir, repo, precision="int8") == 2
    text = config.read_text()
    assert export.config_precision(text) == "int8" and text.count('key: "PRECISION"') == 1
    assert 'key: "CPU_THREADS"' in text  # the rest of the config is kept
    assert export_model(model_dir, repo) == 3 and export.config_precision(config.read_text()) == "int8"

    with pytest.raises(ValueError, match="precision must be one of"):
        export_model(model_dir, repo, precision="int4")
    config.write_text(text.replace('string_value: "int8"', 'string_value: "int4"'))
    with pytest.raises(ValueError, match="precision must be one of"):
        export_model(model_dir, repo)  # refused before a version is written
    assert versions(repo / NAME) == [1, 2, 3]


def test_a_config_without_a_precision_gets_one():
    text = 'name: "m"\nparameters [\n  { key: "N_CANDIDATES", value: { string_value: "50" } }\n]\n'
    assert export.config_precision(text) is None
    added = export.with_config_precision(text, "bf16")
    assert added.startswith(text) and export.config_precision(added) == "bf16"
    assert export.config_precision(export.with_config_precision(added, "fp16")) == "fp16"


def test_the_served_catalogue_is_the_newest_versions_training_data(tmp_path, model_dir):
    import json

    repo, target = tmp_path / "repo", tmp_path / "repo" / NAME
    assert export.served_catalogue(target) is None and not export.serves_catalogue(target, "synthetic")
    cases = [({"format": "synthetic"}, "synthetic"), ({"format": "diginetica"}, "diginetica"),
             ({"source": "retrain", "catalogue": "synthetic"}, "synthetic"),  # a retrain names the site's
             ({"source": "retrain"}, "stream")]  # a retrain from before retrains named it: no catalogue's
    for data, catalogue in cases:
        (model_dir / "config.json").write_text(json.dumps({"training": {"data": data}}))
        export_model(model_dir, repo)
        assert export.served_catalogue(target) == catalogue
        assert export.serves_catalogue(target, "diginetica") == (catalogue == "diginetica")
        assert export.serves_catalogue(target, "synthetic") == (catalogue == "synthetic")
