import base64
import json

import pytest

from stream.schemas import InvalidEvent, dead_letter, parse_event

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
    (encode({**GOOD, "event_type": "wishlist"}), "unknown_event_type"),
    (encode({**GOOD, "session_id": ""}), "invalid_schema"),
    (encode({**GOOD, "pad": "x" * 2_000_000}), "too_large"),
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
