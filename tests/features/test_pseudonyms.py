"""Pseudonyms (features/privacy.py) and the secrets they rest on."""
import os
import stat

import pytest

from contract.settings import get_settings
from features.privacy import PREFIX, pseudonym, require_key


def test_pseudonyms_are_stable_per_key_and_differ_across_keys():
    assert pseudonym(b"k1", "alice") == pseudonym(b"k1", "alice")
    assert pseudonym(b"k1", "alice") != pseudonym(b"k2", "alice") != pseudonym(b"k1", "bob")
    assert pseudonym(b"k1", "alice").startswith(PREFIX) and "alice" not in pseudonym(b"k1", "alice")


def test_an_empty_pseudonym_key_is_refused():
    with pytest.raises(SystemExit, match="RECO_PSEUDONYM_KEY is not set"):
        require_key("")
    assert require_key("s3cret") == b"s3cret"


def test_the_erasure_command_refuses_an_empty_key(monkeypatch):
    from features import erase
    monkeypatch.setenv("RECO_PSEUDONYM_KEY", "")  # the environment wins over .stack/secrets.env
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit, match="RECO_PSEUDONYM_KEY is not set"):
            erase.main(user=["alice"], session=[])
    finally:
        get_settings.cache_clear()


SECRETS = get_settings().stack_dir / "secrets.env"


@pytest.mark.skipif(not SECRETS.exists(), reason="no .stack/secrets.env: run `make setup`")
def test_the_secrets_file_is_readable_by_its_owner_only():
    mode = stat.S_IMODE(os.stat(SECRETS).st_mode)
    assert mode == 0o600, oct(mode)
