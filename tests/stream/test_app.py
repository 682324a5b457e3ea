"""The Faust wiring: importing stream.app does nothing; create_app builds the app from settings."""
import importlib

import pytest

from contract.settings import Settings


def test_importing_the_app_module_reads_no_settings_and_checks_no_key(monkeypatch):
    import contract.settings
    import stream.app

    def no_settings():
        raise AssertionError("settings read at import")

    monkeypatch.setattr(contract.settings, "get_settings", no_settings)
    try:
        importlib.reload(stream.app)  # runs the module again, with get_settings refusing
        assert "app" not in vars(stream.app)  # built on first use only
    finally:
        monkeypatch.undo()
        importlib.reload(stream.app)


def test_without_a_pseudonym_key_the_app_is_not_built(tmp_path):
    from stream.app import create_app

    with pytest.raises(SystemExit, match="RECO_PSEUDONYM_KEY"):
        create_app(Settings(run_dir=tmp_path, pseudonym_key=""))


def test_the_app_has_the_agents_of_the_events_and_of_the_counters(tmp_path):
    from stream.app import create_app

    settings = Settings(run_dir=tmp_path, pseudonym_key="k3y")
    app = create_app(settings)
    assert set(app.agents) == {"stream.app.recommend", "stream.app.count_items", "stream.app.count_users"}
    assert {agent.channel.get_topic_name() for agent in app.agents.values()} == {
        settings.events_topic, settings.item_tally_topic, settings.user_tally_topic}
    assert (tmp_path / "faust").is_dir()
