"""W3C trace context and the side context an event carries: pure parsing and formatting.

A device that sends an MQTT 5 user property ``traceparent`` (and
``tracestate``) has its trace continued: every webhook of the event carries
the same trace id, a span id of its own, and the device's span as parent.
Without one (or with one that is not valid: it is ignored, never an error)
the bridge starts a trace at receipt with a random trace id, kept with the
event so retries and restarts share it.

:class:`EventContext` is what the bridge keeps beside an event and never
shows a receiver as such: the trace, and the MQTT 5 request/response
properties (Response Topic, Correlation Data) a pipe subscription answers to.
It is stored as JSON in the events' ``context`` column (correlation data in
base64, so its bytes come back exact).

Pure: the caller brings the randomness (``os.urandom``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

__all__ = [
    "EventContext",
    "Trace",
    "TraceParent",
    "context_for",
    "format_traceparent",
    "new_span_id",
    "parse_traceparent",
    "trace_of",
]

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# W3C: at most 32 list members of at most 256 characters each; keep it bounded.
_MAX_TRACESTATE = 512
_TRACESTATE_CHARS = re.compile(r"^[\x20-\x7e]*$")


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid ``traceparent``: version 00, trace id, parent (span) id, flags."""

    trace_id: str  # 32 lowercase hex, not all zero
    parent_id: str  # 16 lowercase hex, not all zero
    flags: str  # 2 lowercase hex


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The trace context ``value`` names, or None when it is absent or not valid."""
    if value is None:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    trace_id, parent_id, flags = match.groups()
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, parent_id, flags)


def format_traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    return f"00-{trace_id}-{span_id}-{flags}"


def _nonzero_hex(entropy: bytes, size: int) -> str:
    if len(entropy) < size:
        raise ValueError(f"needs {size} bytes of entropy")
    raw = entropy[:size]
    if not any(raw):  # all-zero ids are invalid; astronomically rare
        raw = raw[:-1] + b"\x01"
    return raw.hex()


def new_span_id(entropy: bytes) -> str:
    """A span id (16 hex) from 8 bytes of ``entropy``."""
    return _nonzero_hex(entropy, 8)


def _clean_tracestate(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_TRACESTATE or not _TRACESTATE_CHARS.match(value):
        return None
    return value


@dataclass(frozen=True, slots=True)
class EventContext:
    """What the bridge keeps beside an event: its trace and MQTT 5 request/response."""

    trace_id: str | None = None
    parent_id: str | None = None  # the device's span; None when the bridge started the trace
    trace_flags: str = "01"
    tracestate: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    # When the device's request expires (receipt + its MQTT 5 Message Expiry
    # Interval, epoch seconds); None: it gave none. An answer is not published later.
    expires_at: float | None = None

    def to_json(self) -> bytes:
        doc: dict[str, str | float] = {}
        if self.trace_id is not None:
            doc["trace_id"] = self.trace_id
            doc["trace_flags"] = self.trace_flags
        if self.parent_id is not None:
            doc["parent_id"] = self.parent_id
        if self.tracestate is not None:
            doc["tracestate"] = self.tracestate
        if self.response_topic is not None:
            doc["response_topic"] = self.response_topic
        if self.correlation_data is not None:
            doc["correlation_data"] = base64.b64encode(self.correlation_data).decode("ascii")
        if self.expires_at is not None:
            doc["expires_at"] = self.expires_at
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> EventContext | None:
        """The stored context; None for none, or for one that cannot be read."""
        if raw is None:
            return None
        try:
            doc = orjson.loads(raw)
            correlation = doc.get("correlation_data")
            expires_at = doc.get("expires_at")
            return cls(
                trace_id=doc.get("trace_id"),
                parent_id=doc.get("parent_id"),
                trace_flags=doc.get("trace_flags", "01"),
                tracestate=doc.get("tracestate"),
                response_topic=doc.get("response_topic"),
                correlation_data=(
                    base64.b64decode(correlation, validate=True)
                    if correlation is not None
                    else None
                ),
                expires_at=None if expires_at is None else float(expires_at),
            )
        except (orjson.JSONDecodeError, AttributeError, ValueError, TypeError):
            return None


def context_for(
    user_properties: Iterable[tuple[str, str]],
    *,
    entropy: bytes,
    response_topic: str | None = None,
    correlation_data: bytes | None = None,
    expires_at: float | None = None,
) -> EventContext:
    """The context of a device message: its trace continued, or a new one from ``entropy``.

    ``entropy``: 16 random bytes (the trace id of a new trace).
    """
    traceparent: str | None = None
    tracestate: str | None = None
    for name, value in user_properties:
        key = name.strip().lower()
        if key == "traceparent" and traceparent is None:
            traceparent = value
        elif key == "tracestate" and tracestate is None:
            tracestate = value
    parent = parse_traceparent(traceparent)
    if parent is None:
        return EventContext(
            trace_id=_nonzero_hex(entropy, 16),
            response_topic=response_topic or None,
            correlation_data=correlation_data,
            expires_at=expires_at,
        )
    return EventContext(
        trace_id=parent.trace_id,
        parent_id=parent.parent_id,
        trace_flags=parent.flags,
        tracestate=_clean_tracestate(tracestate),
        response_topic=response_topic or None,
        correlation_data=correlation_data,
        expires_at=expires_at,
    )


@dataclass(frozen=True, slots=True)
class Trace:
    """The trace an event's webhooks carry."""

    trace_id: str
    flags: str = "01"
    state: str | None = None


def trace_of(event_id: str, context: EventContext | None) -> Trace:
    """The trace an event's webhooks carry.

    An event stored without one (the bridge's own alerts, events stored before
    trace context existed) gets a trace id derived from its id: stable across
    retries and restarts.
    """
    if context is not None and context.trace_id is not None:
        return Trace(context.trace_id, context.trace_flags, context.tracestate)
    derived = hashlib.sha256(b"trace\x00" + event_id.encode("utf-8")).digest()
    return Trace(_nonzero_hex(derived, 16))
