"""The evolution rule of docs/contract.md, pinned: what a consumer of this version does with an event
from an older producer (optional fields missing) or a newer one (fields it does not know), and that
the published schemas describe what the parser accepts, as an independent validator reads them."""
import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import schemas
from contract.messages import Event, InvalidEvent, dead_letter, parse_event
from contract.ranking import Candidate
from contract.settings import Settings

rapidjson = pytest.importorskip("rapidjson")  # RapidJSON's C++ validator (installed with tritonclient)

REQUIRED = ("event_id", "event_type", "session_id", "item_id", "ts")
OPTIONAL = ("user_id", "price", "category_id")  # absent and null mean the same: None
GOOD = {"event_id": "e1", "event_type": "view", "session_id": "s1", "user_id": "u1", "item_id": "i1",
        "ts": 1_700_000_000_000, "price": 9.5, "category_id": "c1"}
# What a newer producer might add: any JSON value under any name this version does not know.
EXTRA = {"currency": "EUR", "schema_version": 2, "context": {"page": "pdp", "ab": [1, 2, {"x": None}]},
         "referrer": None, "Item_Id": "not item_id", "flags": [True, False], "weight": 0.5}
LIMIT = 1_000_000


def encode(obj) -> bytes:
    return json.dumps(obj).encode()


def rejected(raw: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw, LIMIT)
    return caught.value


# ---- a newer producer: unknown fields -------------------------------------------------------

@pytest.mark.parametrize("name", list(EXTRA))
def test_an_unknown_field_is_ignored_and_not_carried(name):
    event = parse_event(encode({**GOOD, name: EXTRA[name]}), LIMIT)
    assert event == parse_event(encode(GOOD), LIMIT)
    assert name not in event.model_dump() and not hasattr(event, name)


def test_many_unknown_fields_at_once_and_in_any_order():
    raw = encode(dict(reversed(list({**EXTRA, **GOOD}.items()))))
    assert parse_event(raw, LIMIT) == Event(**GOOD)


def test_an_unknown_field_is_not_validated_beyond_being_json():
    """Its value is never read: a lone surrogate there is harmless (in a known field it is not)."""
    assert parse_event(encode({**GOOD, "note": "\ud800"}), LIMIT) == Event(**GOOD)
    assert rejected(encode({**GOOD, "item_id": "\ud800"})).reason == "invalid_schema"


@pytest.mark.parametrize("raw, reason", [
    (encode({**GOOD, "blob": "x" * LIMIT}), "too_large"),  # the limit is on the whole message
    (encode(GOOD)[:-1] + b', "score": NaN}', "not_json"),  # the whole message must be JSON
    (encode(GOOD)[:-1] + b', "tree": ' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep"),
])
def test_unknown_fields_still_count_against_the_envelope_limits(raw, reason):
    assert rejected(raw).reason == reason


def test_a_newer_event_type_is_dead_lettered_as_unknown_event_type():
    """The one addition that is not forward compatible: consumers deploy a new type first."""
    exc = rejected(encode({**GOOD, "event_type": "wishlist", **EXTRA}))
    assert exc.reason == "unknown_event_type" and "event_type" in exc.error


# ---- an older producer: optional fields missing ---------------------------------------------

@pytest.mark.parametrize("name", OPTIONAL)
def test_a_missing_optional_field_is_none_and_the_same_as_null(name):
    without = {k: v for k, v in GOOD.items() if k != name}
    event = parse_event(encode(without), LIMIT)
    assert getattr(event, name) is None
    assert event == parse_event(encode({**without, name: None}), LIMIT)
    assert event.model_dump() == {**GOOD, name: None}


def test_an_event_with_only_the_required_fields_is_valid():
    event = parse_event(encode({k: GOOD[k] for k in REQUIRED}), LIMIT)
    assert (event.user_id, event.price, event.category_id) == (None, None, None)


# ---- a broken producer: required fields missing or null -------------------------------------

@pytest.mark.parametrize("name", REQUIRED)
@pytest.mark.parametrize("how", ["missing", "null"])
def test_a_missing_or_null_required_field_is_invalid_schema_naming_the_field(name, how):
    payload = {k: v for k, v in GOOD.items() if k != name} if how == "missing" else {**GOOD, name: None}
    exc = rejected(encode(payload))
    assert exc.reason == "invalid_schema"
    assert exc.error.startswith(f"{name}: ") and ("Field required" in exc.error) == (how == "missing")


@pytest.mark.parametrize("value", [1.7e12, 1_700_000_000_000.0, "1700000000000", True])
def test_ts_is_an_integer_literal(value):
    """JSON Schema calls 1700000000000.0 an integer; this consumer does not (docs/contract.md)."""
    assert rejected(encode({**GOOD, "ts": value})).reason == "invalid_schema"


def test_price_may_be_written_as_an_integer():
    assert parse_event(encode({**GOOD, "price": 5}), LIMIT).price == 5.0


# ---- through the pipeline: what reaches the topics ------------------------------------------

class Ranker:
    async def rank(self, sessions):
        return [[Candidate(f"r{n}", 10.0 - n, -1, 0.0) for n in range(10)] for _ in sessions], "fake:1", "synthetic"


@pytest.fixture
def pipeline(tmp_path):
    from features.cache import StateCache
    from features.store import OnlineFeatures
    from stream.pipeline import Pipeline

    config = Settings(run_dir=tmp_path, online_store="sqlite", k=5)
    features = OnlineFeatures(config)
    features.apply()
    return Pipeline(config, StateCache(features), Ranker())


async def test_old_and_new_producers_get_recommendations_and_a_broken_one_a_dead_letter(pipeline):
    from stream.pipeline import RawMessage

    old = {k: v for k, v in {**GOOD, "event_id": "old"}.items() if k not in OPTIONAL}
    new = {**GOOD, "event_id": "new", "session_id": "s2", **EXTRA}
    broken = encode({k: v for k, v in {**GOOD, "event_id": "broken"}.items() if k != "item_id"})
    raws = [encode(old), encode(new), broken]
    result = await pipeline.recommend(await pipeline.fold([RawMessage(raw, "events", 3, 40 + n)
                                                           for n, raw in enumerate(raws)]))

    assert [r.event_id for r in result.recommendations] == ["old", "new"]
    assert [r.fallback for r in result.recommendations] == [None, None]
    [letter] = result.dead_letters
    assert (letter.reason, letter.topic, letter.partition, letter.offset) == ("invalid_schema", "events", 3, 42)
    assert letter.error == "item_id: Field required"
    raw = base64.b64decode(letter.raw) if letter.raw_encoding == "base64" else letter.raw.encode()
    assert raw == broken  # the original bytes, for replay once the producer is fixed

    # What the worker publishes is what the published schemas say a consumer receives.
    for name, messages in (("recommendation", result.recommendations), ("dead_letter", result.dead_letters)):
        validate = rapidjson.Validator(schemas.render(name))
        for message in messages:
            validate(message.model_dump_json())


# ---- the event schema describes the parser --------------------------------------------------

EVENT_SCHEMA = rapidjson.Validator(schemas.render("event"))


def schema_accepts(raw: bytes) -> bool:
    try:
        EVENT_SCHEMA(raw.decode())
    except rapidjson.ValidationError:
        return False
    return True


values = st.one_of(st.none(), st.booleans(), st.integers(-10, 5_000_000_000_000),
                   st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=210),
                   st.sampled_from(["view", "click", "add_to_cart", "purchase", "", "x" * 200, "x" * 201,
                                    "é" * 200, "é" * 201, "😀" * 200, "😀" * 201]),  # code points
                   st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(list(GOOD) + ["extra", "Ts"]), values | st.just("<absent>"),
                               max_size=4))
def test_the_event_schema_accepts_exactly_what_the_parser_accepts(changes):
    """Within what JSON Schema can say: no size limit, no lone surrogate, integers written as such."""
    payload = {k: v for k, v in {**GOOD, **changes}.items() if v != "<absent>"}
    raw = encode(payload)
    try:
        parse_event(raw, LIMIT)
        parsed = True
    except InvalidEvent as exc:
        parsed = False
        assert exc.reason in ("invalid_schema", "unknown_event_type")
        assert dead_letter(raw, exc, "events", 0, 0).reason == exc.reason
    assert schema_accepts(raw) == parsed, (payload, parsed)
