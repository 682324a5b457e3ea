"""Pseudonymous ids: a shopper's id is replaced by a keyed hash before anything is stored,
logged, counted or modelled. The key (RECO_PSEUDONYM_KEY) is made by `make setup` and never
committed; whoever lacks it cannot link a pseudonym back to a known id by hashing candidates.
Rotating the key starts new pseudonyms: state kept under the old ones expires by its TTL."""
from __future__ import annotations

import hashlib
import hmac

PREFIX = "p_"


def pseudonym(key: bytes, value: str) -> str:
    """HMAC-SHA256 of the id, 128 bits in hex: stable for one key, unlinkable without it."""
    return PREFIX + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def require_key(secret: str) -> bytes:
    """The pseudonym key as bytes; an empty key is refused, since HMAC under "" would publish
    pseudonyms anyone can recompute from a guessed id."""
    if not secret:
        raise SystemExit("RECO_PSEUDONYM_KEY is not set: `make setup` writes one to .stack/secrets.env, "
                         "and deploy/up.sh passes it to the worker")
    return secret.encode()
