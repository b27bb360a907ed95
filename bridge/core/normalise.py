"""Normalisation: one MQTT message → one canonical :class:`~bridge.core.events.Event`, or a reason.

The steps, each of which may end in a :class:`Rejected`:

1. limits that need no decoding: payload size, topic length, topic encoding;
2. the first mapping that owns the topic — user rules first, then the
   telemetry topics, then the profiles ``settings.profiles`` names, in order;
3. the payload parsed (JSON, or text when it is not JSON) and checked against
   the nesting and field-count limits;
4. the mapping reads it into a :class:`~bridge.core.profiles.base.Draft`;
   the account, when the mapping names one, is a level of the topic (a rule's
   ``account: topic.<level>``, or ``accounts.topic_prefix``), never the payload;
5. the draft becomes an event: the type's catalogue model or declared JSON
   Schema validates ``data`` (:mod:`bridge.core.event_types`), the
   device's ``occurred_at`` becomes the timestamp, its message ``id`` the
   stable event id.

Pure: no clock (receipt time comes with the message), no I/O, and
:meth:`Normaliser.normalise` never raises, whatever the input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from bridge.core.event_types import EventTypes
from bridge.core.events import Event, content_hash, event_id_for, new_event_id
from bridge.core.profiles import load_profiles
from bridge.core.profiles.base import Draft, Payload, Profile, Rejected, json_kind, quote
from bridge.core.profiles.native import NativeProfile
from bridge.core.profiles.prefixed import AccountPrefixed
from bridge.core.profiles.telemetry import TelemetryTopics
from bridge.core.rules import compile_rules
from bridge.core.settings.accounts import account_problem
from bridge.core.settings.models import LimitsSettings, Settings

__all__ = ["Message", "Normalised", "Normaliser", "Rejected", "parse_occurred_at"]

# An epoch number this large is milliseconds: 1e11 seconds is the year 5138.
_MILLIS_THRESHOLD = 1e11


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message as the broker delivered it."""

    topic: str  # may hold surrogates: the wire bytes were decoded with "surrogateescape"
    payload: bytes
    received_at: datetime  # tz-aware UTC
    retain: bool = False
    dup: bool = False
    content_type: str | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    # Minted once when the message arrives: the event id used when the device
    # gives no message id of its own, so every commit retry keeps the same id.
    receipt_id: str | None = None
    # MQTT 5 request/response: where the device wants an answer, and what it
    # names the request by (bytes, kept exact).
    response_topic: str | None = None
    correlation_data: bytes | None = None
    # MQTT 5 Message Expiry Interval (seconds) as the broker forwarded it: what is left.
    message_expiry: int | None = None
    # The PUBLISH's packet identifier (0 for QoS 0) and the connection it came on:
    # what tells a broker redelivery from a new message (bridge.store.packets).
    packet_id: int = 0
    connection: str = ""


@dataclass(frozen=True, slots=True)
class Normalised:
    """An accepted message."""

    event: Event
    # Set when the device gave no message id: a broker redelivery (DUP) of the
    # same message is then recognised by this hash of topic and payload.
    content_hash: str | None


class Normaliser:
    """Turns messages into events with the rules and profiles of one configuration."""

    def __init__(self, settings: Settings, *, source: str) -> None:
        self._limits: LimitsSettings = settings.limits
        self._source = source.rstrip("/")
        self._types = EventTypes(settings.event_types)
        # Construction raises ConfigError for unknown profiles and broken rules:
        # that is configuration, found before the first message arrives.
        telemetry = settings.telemetry.topics
        profiles: list[Profile] = load_profiles(settings.profiles)
        prefix = settings.accounts.topic_prefix
        if prefix is not None:
            # The native topics under the prefix too; the plain ones keep working.
            profiles = [
                *(AccountPrefixed(p, prefix) for p in profiles if isinstance(p, NativeProfile)),
                *profiles,
            ]
        self._mappings: list[Profile] = [
            *compile_rules(settings.rules, self._types),
            *([TelemetryTopics(telemetry)] if telemetry else []),
            *profiles,
        ]

    def topic_filters(self) -> list[str]:
        """The MQTT filters to subscribe to, each once, rules' first."""
        filters: dict[str, None] = {}
        for mapping in self._mappings:
            filters.update(dict.fromkeys(mapping.topic_filters()))
        return list(filters)

    def normalise(self, message: Message) -> Normalised | Rejected:
        """The event ``message`` stands for, or why it stands for none. Never raises."""
        try:
            return self._normalise(message)
        except Exception as exc:  # noqa: BLE001 - bad input must never stop the bridge
            return Rejected(
                "internal_error",
                f"normalising this message failed unexpectedly ({type(exc).__name__}); "
                "it is kept for inspection",
            )

    def _normalise(self, message: Message) -> Normalised | Rejected:
        refused = _check_limits(message, self._limits)
        if refused is not None:
            return refused
        owner = self._owner(message.topic)
        if isinstance(owner, Rejected):
            return owner
        mapping, named = owner
        account = _account(mapping, named)
        if isinstance(account, Rejected):
            return account
        result = self._read(message, mapping, named)
        if isinstance(result, Rejected):
            # Kept with its account: the rejection belongs to it as the event would.
            return replace(result, account=account)
        return Normalised(result.event.with_account(account), result.content_hash)

    def _read(
        self, message: Message, mapping: Profile, named: Mapping[str, str]
    ) -> Normalised | Rejected:
        payload = _parse(message.payload, self._limits)
        if isinstance(payload, Rejected):
            return payload
        draft = mapping.interpret(named, payload)
        if isinstance(draft, Rejected):
            return draft
        return self._event(message, draft)

    def _owner(self, topic: str) -> tuple[Profile, Mapping[str, str]] | Rejected:
        """The first mapping that reads ``topic``, with the topic's named levels."""
        levels = topic.split("/")
        for mapping in self._mappings:
            named = mapping.match(levels)
            if named is not None:
                break
        else:
            return Rejected("unknown_topic", f"no rule or profile reads topic {quote(topic)}")
        for name, level in named.items():
            if not level or "+" in level or "#" in level:
                return Rejected(
                    "unknown_topic",
                    f"topic level {name} is {quote(level)}: it must be non-empty, without + or #",
                )
        return mapping, named

    def _event(self, message: Message, draft: Draft) -> Normalised | Rejected:
        if not self._types.is_device_type(draft.type):
            why = (
                "is made by the bridge itself"
                if draft.type.startswith("bridge.")
                else "is not in the event catalogue (nor declared under event_types)"
            )
            return Rejected("unknown_type", f"event type {quote(draft.type)} {why}")
        device_id = _device_id(draft.device_id)
        if isinstance(device_id, Rejected):
            return device_id
        data = self._types.validate(draft.type, {"device_id": device_id, **draft.fields})
        if isinstance(data, Rejected):
            return data
        timestamp = message.received_at
        if draft.occurred_at is not None:
            occurred = parse_occurred_at(draft.occurred_at)
            if isinstance(occurred, str):
                return Rejected("invalid_fields", occurred)
            timestamp = occurred
        source = f"{self._source}/{message.topic}"
        identity = _identity(draft.message_id, source, device_id, message)
        if isinstance(identity, Rejected):
            return identity
        event_id, digest = identity
        return Normalised(Event(event_id, draft.type, timestamp, source, data), digest)


def _account(mapping: Profile, named: Mapping[str, str]) -> str | Rejected | None:
    """The account a topic names: the level the mapping reads it from, if any."""
    level = getattr(mapping, "account_level", None)
    if not isinstance(level, str):
        return None
    account = named.get(level)
    if account is None:
        return None
    problem = account_problem(account)
    if problem is not None:
        return Rejected(
            "invalid_account", f"the topic names the account {quote(account)}: {problem}"
        )
    return account


def _identity(
    message_id: object, source: str, device_id: str, message: Message
) -> tuple[str, str | None] | Rejected:
    """The event id, and the content hash that stands in when the device gave no id."""
    if message_id is None:
        digest = content_hash(message.topic, message.payload)
        # Ingest mints the id at receipt (so commit retries keep it); without one,
        # the id follows from the content and the time of receipt.
        minted = message.receipt_id or new_event_id(message.received_at, bytes.fromhex(digest))
        return minted, digest
    if (isinstance(message_id, str) and message_id) or (
        isinstance(message_id, int) and not isinstance(message_id, bool)
    ):
        return event_id_for(source, device_id, str(message_id)), None
    return Rejected(
        "invalid_fields",
        f"id: must be a non-empty string or an integer, not {quote(message_id)}",
    )


def _check_limits(message: Message, limits: LimitsSettings) -> Rejected | None:
    """The checks that need no decoding, cheapest first."""
    size = len(message.payload)
    if size > limits.max_payload:
        return Rejected(
            "too_large",
            f"the payload is {size} bytes; limits.max_payload is {limits.max_payload}",
        )
    topic = message.topic
    if len(topic) > limits.max_topic_length:
        return Rejected(
            "topic_too_long",
            f"the topic is {len(topic)} characters; "
            f"limits.max_topic_length is {limits.max_topic_length}",
        )
    if not topic.isascii() and not _is_utf8(topic):
        return Rejected("invalid_utf8", f"the topic {quote(topic)} is not valid UTF-8")
    return None


def _device_id(value: object) -> str | Rejected:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # numeric device ids are common; the topic level is text anyway
    if value is None or value == "":
        return Rejected("missing_device_id", "the message names no device")
    if not isinstance(value, str):
        return Rejected("invalid_fields", f"device_id: must be a string, not {json_kind(value)}")
    return value


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse(raw: bytes, limits: LimitsSettings) -> Payload | Rejected:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        problem = str(exc)
        if problem.startswith("depth limit"):  # the parser's own limit, far above ours
            return _too_deep(limits)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Rejected("invalid_utf8", f"the payload is not valid UTF-8 (at byte {bad.start})")
        return Payload(text, is_json=False, problem=problem)
    if isinstance(document, dict | list):
        refused = _check_shape(document, limits)
        if refused is not None:
            return refused
    return Payload(document, is_json=True)


def _check_shape(document: dict[str, Any] | list[Any], limits: LimitsSettings) -> Rejected | None:
    """Nesting depth and the number of keys over the whole document, without recursion."""
    max_depth, max_fields = limits.max_json_depth, limits.max_fields
    fields = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:  # each container is pushed once: bounded by the payload size
        value, depth = stack.pop()
        if depth > max_depth:
            return _too_deep(limits)
        if isinstance(value, dict):
            fields += len(value)
            if fields > max_fields:
                return Rejected(
                    "too_many_fields",
                    f"the payload has more than {max_fields} keys (limits.max_fields)",
                )
            children = value.values()
        else:
            children = value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return None


def _too_deep(limits: LimitsSettings) -> Rejected:
    return Rejected(
        "too_deep",
        f"the payload nests deeper than {limits.max_json_depth} levels (limits.max_json_depth)",
    )


def parse_occurred_at(value: object) -> datetime | str:
    """The device's ``occurred_at`` as an aware UTC time, or the sentence saying what is wrong.

    Accepts RFC 3339 text (``2026-11-22T04:36:14.553Z``) and epoch numbers,
    read as milliseconds when too large to be seconds.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _from_epoch(value)
    if isinstance(value, str):
        return _from_text(value)
    return f"occurred_at: must be RFC 3339 text or an epoch number, not {json_kind(value)}"


def _from_epoch(value: float) -> datetime | str:
    seconds = value / 1000 if abs(value) >= _MILLIS_THRESHOLD else value
    if math.isfinite(seconds):
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return f"occurred_at: {quote(value)} is outside the range of dates"


def _from_text(value: str) -> datetime | str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return f"occurred_at: {quote(value)} is not an RFC 3339 time"
    if moment.tzinfo is None:
        return f"occurred_at: {quote(value)} has no UTC offset (add Z or +hh:mm)"
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return f"occurred_at: {quote(value)} is outside the range of dates"
