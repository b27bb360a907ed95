"""Spans as the bridge builds them: finished records with W3C hex ids.

Ingest and delivery build a :class:`Span` when their work is done and hand it
to a :class:`Spans` sink; :class:`NoSpans` is the sink when tracing export is
off (nothing is built then). The OTLP exporter is at the edge, in
:mod:`bridge.observe.otlp`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Attributes", "NoSpans", "Span", "SpanLink", "Spans", "receive_span_id"]

Attributes = Mapping[str, str | int | float | bool]


def receive_span_id(event_id: str) -> str:
    """The span id of an event's receive span: derived, so it needs no storage."""
    raw = hashlib.sha256(b"receive\x00" + event_id.encode("utf-8")).digest()[:8]
    return (raw if any(raw) else b"\x00" * 7 + b"\x01").hex()


@dataclass(frozen=True, slots=True)
class SpanLink:
    """A link from a span to another one (of another trace, say): W3C hex ids."""

    trace_id: str
    span_id: str
    flags: str
    attributes: Attributes


@dataclass(frozen=True, slots=True)
class Span:
    """One finished span: ids as W3C hex, times as epoch seconds."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    flags: str
    start: float
    end: float
    attributes: Attributes
    error: str | None = None
    client: bool = False  # an outgoing request (an attempt) rather than a received message
    links: tuple[SpanLink, ...] = ()


class Spans(Protocol):
    enabled: bool

    def record(self, span: Span) -> None: ...

    def shutdown(self) -> None: ...


class NoSpans:
    """Tracing export off: spans are not built at all."""

    enabled = False

    def record(self, span: Span) -> None:
        return None

    def shutdown(self) -> None:
        return None
