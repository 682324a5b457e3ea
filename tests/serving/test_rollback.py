"""python -m serving.rollback on a repository and run directory under tmp_path."""
import pytest
from typer.testing import CliRunner

from contract.settings import get_settings
from serving.online.export import export_model, versions
from serving.rollback import cli


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("RECO_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("RECO_MODEL_REPO", str(tmp_path / "repo"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_rollback_moves_the_newest_version_out_and_refuses_on_the_last(tmp_path, settings):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("config.json", "weights.pt", "vocab.json"):
        (model_dir / name).write_text(name)
    assert [export_model(model_dir, settings.model_repo) for _ in range(2)] == [1, 2]
    target = settings.model_repo / settings.model_name
    runner = CliRunner()

    result = runner.invoke(cli, [])
    assert result.exit_code == 0, result.output
    assert "from version 2 to version 1" in result.output
    assert versions(target) == [1]
    assert (settings.run_dir / "retired" / settings.model_name / "2" / "weights.pt").read_text() == "weights.pt"

    result = runner.invoke(cli, [])
    assert result.exit_code == 1
    assert "rollback refused" in result.output and "only version 1" in result.output
    assert versions(target) == [1]
    assert export_model(model_dir, settings.model_repo) == 3  # the retired 2 is not reused
