"""Single source of truth for every message on the wire (JSON, Kafka key = session_id)."""
from __future__ import annotations

import base64
import json
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from contract.vocab import DlqReason, EventType, FallbackReason

# Latest accepted event time (2100-01-01 UTC): later ones are bugs, and they must fit Feast's int64.
MAX_TS_MS = 4_102_444_800_000


def _encodable(value: str) -> str:
    """JSON escapes can produce lone surrogates, which no store, topic or client can encode."""
    value.encode("utf-8")  # UnicodeEncodeError is a ValueError: pydantic reports it as a field error
    return value


Id = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_encodable)]


class Event(BaseModel):
    """A shopper's interaction, published by the site to the events topic."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore", allow_inf_nan=False)

    event_id: Id
    event_type: EventType
    session_id: Id
    user_id: Id | None = None
    item_id: Id
    ts: int = Field(ge=0, le=MAX_TS_MS, description="epoch milliseconds")
    price: float | None = None
    category_id: Id | None = None


class RecommendedItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    score: float
    explanation: list[str] = Field(min_length=1)


class Recommendation(BaseModel):
    """Published once per valid event, keyed by session_id."""

    # Every field is always serialised (fallback as null too): the published schema says so.
    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    event_id: str
    session_id: str
    user_id: str | None
    items: list[RecommendedItem]
    model_version: str
    generated_at: int = Field(description="epoch milliseconds")
    fallback: FallbackReason | None = None


class DeadLetter(BaseModel):
    """An input message that could not be processed, with the reason; nothing is dropped silently."""

    model_config = ConfigDict(frozen=True)

    raw: str = Field(description="the message's bytes, exactly: as text or base64 (raw_encoding)")
    raw_encoding: Literal["text", "base64"]
    reason: DlqReason
    error: str = Field(description="human-readable detail")
    topic: str
    partition: int
    offset: int


class Tally(BaseModel):
    """One valid event's share of the item and user counters, forwarded by the worker that folded
    its session to the topics partitioned by item and by user (internal: ``events.by-item``,
    ``events.by-user``), so one worker owns each item's and each user's counters whatever the
    number of workers. ``source_partition``/``source_offset`` name the event on ``events``: a
    counter applies each event once, however often it is forwarded (features/state.py)."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    event_type: EventType
    session_id: str
    user_id: str | None
    item_id: str
    category_id: str | None
    session_is_new: bool  # the session's first event: counts a session for the user
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)


class TallyBatch(BaseModel):
    """The tallies one worker gathered since its last flush whose items (users) hash to one
    partition of the tallies topic: one message per partition and flush instead of one per event."""

    model_config = ConfigDict(frozen=True)

    tallies: list[Tally]


class Erasure(BaseModel):
    """On the control topic (``python -m features.erase``): every worker drops these sessions and
    users from memory and deletes their rows from the online store. Ids as stored: pseudonyms."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_ids: list[str] = []
    user_ids: list[str] = []
    requested_at: int = Field(description="epoch milliseconds")


class InvalidEvent(ValueError):
    def __init__(self, reason: DlqReason, error: str):
        super().__init__(f"{reason}: {error}")
        self.reason = reason
        self.error = error


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON (RFC 8259 has no NaN or Infinity)")


def parse_event(raw: bytes, max_bytes: int) -> Event:
    """Decode and validate one raw events-topic message, or raise InvalidEvent with a reason.

    Total over its input: whatever the bytes, the outcome is an Event or an InvalidEvent.
    """
    if len(raw) > max_bytes:
        raise InvalidEvent("too_large", f"message is {len(raw)} bytes, limit {max_bytes}")
    try:
        payload = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidEvent("too_deep", "JSON nesting deeper than the parser's recursion limit") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN, integers over 4,300 digits
        raise InvalidEvent("not_json", str(exc)[:500]) from None
    if not isinstance(payload, dict):
        raise InvalidEvent("invalid_schema", f"expected a JSON object, got {type(payload).__name__}")
    try:
        return Event.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        # unknown_event_type: a type this consumer does not know yet (a newer producer, see
        # docs/contract.md); a missing or non-string event_type is a malformed event.
        reason: DlqReason = "unknown_event_type" if isinstance(payload.get("event_type"), str) \
            and any(e["loc"] == ("event_type",) for e in errors) else "invalid_schema"
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in errors)
        raise InvalidEvent(reason, detail[:500]) from None
    except RecursionError:  # a deep value in a field the model reads
        raise InvalidEvent("too_deep", "a field holds JSON nested too deep to validate") from None


def _escapes_cheaply(text: str) -> bool:
    """JSON escapes a control character in six bytes and a quote or backslash in two; base64 costs
    4/3. Text is kept only while escaping costs less, so a dead letter is never much larger than
    the message it carries (and fits the DLQ topic's size limit)."""
    extra = sum(5 if c < " " else 1 for c in text if c < " " or c in '"\\')
    return extra <= len(text) // 3


def dead_letter(raw: bytes, exc: InvalidEvent, topic: str, partition: int, offset: int) -> DeadLetter:
    try:
        text = raw.decode("utf-8")
        encoding: Literal["text", "base64"] = "text" if _escapes_cheaply(text) else "base64"
    except UnicodeDecodeError:
        encoding = "base64"
    if encoding == "base64":
        text = base64.b64encode(raw).decode("ascii")
    return DeadLetter(raw=text, raw_encoding=encoding, reason=exc.reason, error=exc.error,
                      topic=topic, partition=partition, offset=offset)
