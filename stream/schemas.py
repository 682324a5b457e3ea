"""Single source of truth for every message on the wire (JSON, Kafka key = session_id)."""
from __future__ import annotations

import base64
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

EventType = Literal["view", "click", "add_to_cart", "purchase"]
EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")


class Event(BaseModel):
    """A shopper's interaction, published by the site to the events topic."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    event_id: str = Field(min_length=1, max_length=200)
    event_type: EventType
    session_id: str = Field(min_length=1, max_length=200)
    user_id: str | None = None
    item_id: str = Field(min_length=1, max_length=200)
    ts: int = Field(ge=0, description="epoch milliseconds")
    price: float | None = None
    category_id: str | None = None


class RecommendedItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_id: str
    score: float
    explanation: list[str] = Field(min_length=1)


class Recommendation(BaseModel):
    """Published once per valid event, keyed by session_id."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    session_id: str
    user_id: str | None
    items: list[RecommendedItem]
    model_version: str
    generated_at: int = Field(description="epoch milliseconds")
    fallback: str | None = None


class DeadLetter(BaseModel):
    """An input message that could not be processed, with the reason; nothing is dropped silently."""

    model_config = ConfigDict(frozen=True)

    raw: str
    raw_encoding: Literal["text", "base64"]
    reason: str  # short code: too_large, not_json, invalid_schema, unknown_event_type
    error: str  # human-readable detail
    topic: str
    partition: int
    offset: int


class InvalidEvent(ValueError):
    def __init__(self, reason: str, error: str):
        super().__init__(f"{reason}: {error}")
        self.reason = reason
        self.error = error


def parse_event(raw: bytes, max_bytes: int) -> Event:
    """Decode and validate one raw events-topic message, or raise InvalidEvent with a reason."""
    if len(raw) > max_bytes:
        raise InvalidEvent("too_large", f"message is {len(raw)} bytes, limit {max_bytes}")
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent("not_json", str(exc)) from None
    if not isinstance(payload, dict):
        raise InvalidEvent("invalid_schema", f"expected a JSON object, got {type(payload).__name__}")
    try:
        return Event.model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        reason = "unknown_event_type" if any(e["loc"] == ("event_type",) for e in errors) else "invalid_schema"
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in errors)
        raise InvalidEvent(reason, detail) from None


def dead_letter(raw: bytes, exc: InvalidEvent, topic: str, partition: int, offset: int) -> DeadLetter:
    try:
        text, encoding = raw.decode("utf-8"), "text"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return DeadLetter(raw=text, raw_encoding=encoding, reason=exc.reason, error=exc.error,
                      topic=topic, partition=partition, offset=offset)
