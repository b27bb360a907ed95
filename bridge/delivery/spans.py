"""The ``hookbridge.attempt`` spans of HTTP attempts, for OTLP export (:mod:`bridge.observe.otlp`).

One span per POST. A single event's attempt is a child of the event's receive
span, in the event's trace. A batch POST carries the trace context of its
first event, so its span is a child of that event's receive span, in that
trace; each event of the batch gets a span link from it to its own receive
span (in its own trace), so every member's trace reaches the POST that
carried it. Either span's id is the parent id of the ``traceparent`` the
receiver gets.
"""

from __future__ import annotations

import structlog

from bridge.config import Subscription
from bridge.core.batching import Batch
from bridge.core.events import Event
from bridge.core.outcomes import AttemptResult
from bridge.core.trace import trace_of
from bridge.observe.spans import Attributes, Span, SpanLink, Spans, receive_span_id

__all__ = ["record_attempt", "record_batch_attempt"]

log = structlog.get_logger(__name__)


def record_attempt(
    spans: Spans,
    subscription: Subscription,
    event: Event,
    result: AttemptResult,
    *,
    delivery_id: str,
    attempt: int,
    span_id: str,
    start: float,
) -> None:
    """Export the span of one event's attempt."""
    attributes: Attributes = {
        "hookbridge.event_id": event.id,
        "hookbridge.event_type": event.type,
        "hookbridge.delivery_id": delivery_id,
    }
    _record(
        spans,
        subscription,
        event,
        result,
        attributes=attributes,
        attempt=attempt,
        span_id=span_id,
        start=start,
    )


def record_batch_attempt(
    spans: Spans,
    subscription: Subscription,
    batch: Batch,
    result: AttemptResult,
    *,
    attempt: int,
    span_id: str,
    start: float,
) -> None:
    """Export the span of one batch POST, linked to every member's receive span."""
    links = []
    for event in batch.events:
        trace = trace_of(event.id, event.context)
        link = SpanLink(
            trace.trace_id,
            receive_span_id(event.id),
            trace.flags,
            {"hookbridge.event_id": event.id},
        )
        links.append(link)
    attributes: Attributes = {"hookbridge.batch_id": batch.id, "hookbridge.batch_size": batch.size}
    _record(
        spans,
        subscription,
        batch.first,
        result,
        attributes=attributes,
        attempt=attempt,
        span_id=span_id,
        start=start,
        links=tuple(links),
    )


def _record(
    spans: Spans,
    subscription: Subscription,
    parent: Event,
    result: AttemptResult,
    *,
    attributes: Attributes,
    attempt: int,
    span_id: str,
    start: float,
    links: tuple[SpanLink, ...] = (),
) -> None:
    """The attempt span, in ``parent``'s trace under its receive span."""
    trace = trace_of(parent.id, parent.context)
    every: dict[str, str | int | float | bool] = {
        **attributes,
        "hookbridge.subscription": subscription.name,
        "hookbridge.attempt": attempt,
        "hookbridge.outcome": result.outcome,
        "http.request.method": "POST",
    }
    if result.status_code is not None:
        every["http.response.status_code"] = result.status_code
    try:
        spans.record(
            Span(
                "hookbridge.attempt",
                trace_id=trace.trace_id,
                span_id=span_id,
                parent_id=receive_span_id(parent.id),
                flags=trace.flags,
                start=start,
                end=start + result.latency_ms / 1000,
                attributes=every,
                error=result.error if result.outcome != "delivered" else None,
                client=True,
                links=links,
            )
        )
    except Exception:  # export must never touch a delivery
        log.warning("could not record the attempt's span", exc_info=True)
