import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.messages import MAX_TS_MS, InvalidEvent, dead_letter, parse_event

GOOD = {"event_id": "e1", "event_type": "view", "session_id": "s1", "user_id": None, "item_id": "i1",
        "ts": 1_700_000_000_000, "price": 9.5, "category_id": "c1"}


def encode(obj) -> bytes:
    return json.dumps(obj).encode()


def test_valid_event_parses():
    event = parse_event(encode(GOOD), 1_000_000)
    assert event.item_id == "i1" and event.ts == GOOD["ts"] and event.price == 9.5


@pytest.mark.parametrize("raw, reason", [
    (b"not json {", "not_json"),
    (b"\xff\xfe\x00", "not_json"),
    (encode([1, 2]), "invalid_schema"),
    (encode({k: v for k, v in GOOD.items() if k != "item_id"}), "invalid_schema"),
    (encode({**GOOD, "ts": "yesterday"}), "invalid_schema"),
    (encode({**GOOD, "ts": "1700000000000"}), "invalid_schema"),
    (encode({**GOOD, "event_type": "wishlist"}), "unknown_event_type"),  # a newer producer's type
    (encode({"event_type": "wishlist"}), "unknown_event_type"),  # whatever else is wrong
    (encode({k: v for k, v in GOOD.items() if k != "event_type"}), "invalid_schema"),  # malformed, not newer
    (encode({**GOOD, "event_type": 1}), "invalid_schema"),
    (encode({**GOOD, "event_type": None}), "invalid_schema"),
    (encode({**GOOD, "session_id": ""}), "invalid_schema"),
    (encode({**GOOD, "pad": "x" * 2_000_000}), "too_large"),
    (b"[" * 5000 + b"]" * 5000, "too_deep"),
    (b'{"item_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too_deep"),
    (b"", "not_json"),
    (b"42", "invalid_schema"),
    (b'"a string"', "invalid_schema"),
    (b"null", "invalid_schema"),
    (encode(GOOD).replace(b"9.5", b"NaN"), "not_json"),
    (encode(GOOD).replace(b"9.5", b"-Infinity"), "not_json"),
    (encode(GOOD).replace(b"9.5", b"1e999"), "invalid_schema"),  # parses as inf, which is not a price
    (encode({**GOOD, "ts": -1}), "invalid_schema"),
    (encode({**GOOD, "ts": MAX_TS_MS + 1}), "invalid_schema"),
    (encode(GOOD).replace(b"1700000000000", b"9" * 5000), "not_json"),  # over Python's int digit limit
    (encode(GOOD).replace(b'"i1"', b'"\\ud800"'), "invalid_schema"),  # a lone surrogate: not encodable
    (encode({**GOOD, "user_id": 7}), "invalid_schema"),
    (encode({**GOOD, "item_id": "x" * 201}), "invalid_schema"),
])
def test_bad_events_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, 1_000_000)
    assert caught.value.reason == reason
    assert caught.value.error


def test_dead_letter_keeps_the_original_bytes():
    raw = b"\xff\x00binary"
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, 1_000_000)
    letter = dead_letter(raw, caught.value, "events", 2, 17)
    assert letter.raw_encoding == "base64" and base64.b64decode(letter.raw) == raw
    assert (letter.topic, letter.partition, letter.offset, letter.reason) == ("events", 2, 17, "not_json")


def test_control_characters_make_a_base64_dead_letter_no_larger_than_base64():
    raw = b"\x01" * 3000
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, 1_000_000)
    letter = dead_letter(raw, caught.value, "events", 0, 0)
    assert letter.raw_encoding == "base64"
    assert len(letter.model_dump_json()) < 4 / 3 * len(raw) + 500


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=500).map(str.encode),
    st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=50),
                 lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                 max_leaves=50).map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(list(GOOD)), st.none() | st.integers() | st.floats() | st.text(max_size=30),
                    ).map(lambda d: json.dumps({**GOOD, **d}).encode()),
))
def test_parse_event_is_total_and_every_rejection_makes_a_dead_letter(raw):
    """Whatever the bytes: an Event, or an InvalidEvent whose dead letter serialises."""
    try:
        parse_event(raw, 1_000_000)
    except InvalidEvent as exc:
        letter = dead_letter(raw, exc, "events", 0, 0)
        decoded = base64.b64decode(letter.raw) if letter.raw_encoding == "base64" else letter.raw.encode()
        assert decoded == raw and json.loads(letter.model_dump_json())["reason"] == exc.reason
