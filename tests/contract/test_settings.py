"""Every setting is documented where users look for it."""
from pathlib import Path

from contract.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_configuration_table():
    readme = README.read_text()
    missing = [f"RECO_{name.upper()}" for name in Settings.model_fields if f"`RECO_{name.upper()}`" not in readme]
    assert not missing, f"README's Configuration table lacks {missing}"
