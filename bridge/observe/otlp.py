"""Optional OpenTelemetry export of the bridge's spans (:mod:`bridge.observe.spans`) over OTLP/HTTP.

With ``tracing.otlp_endpoint`` set (and the ``otlp`` extra installed:
``pip install 'hookbridge[otlp]'``), the bridge exports, per event:

* ``hookbridge.receive``: from the MQTT receipt to the commit that stored the
  event; its parent is the device's span when the device sent a
  ``traceparent``. Its span id is derived from the event id, so every
  instance and every restart names the same span.
* ``hookbridge.attempt``: one per HTTP attempt, child of the receive span.
  Its span id is the parent id of the ``traceparent`` the receiver gets, so
  the receiver's own spans hang under it. A batch POST is one attempt span
  too: in the trace of the batch's first event (whose trace context the POST
  carries), child of that event's receive span, with a span link to the
  receive span of every event in the batch (attribute ``hookbridge.event_id``).

Spans are built when their work is done (their ids and times are the
bridge's own, see :mod:`bridge.core.trace`) and handed to the SDK's batch
processor, which exports them from its own thread. Export problems are the
SDK's to log; they never slow down or fail a delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pydantic import SecretStr

from bridge.errors import ConfigError
from bridge.observe.logs import get_logger
from bridge.observe.spans import NoSpans, Span, Spans

__all__ = ["OtlpSpans", "open_spans"]

log = get_logger("hookbridge.tracing")


class TracingSettings(Protocol):
    """What the exporter needs of ``tracing:`` (:class:`bridge.config.TracingSettings`)."""

    @property
    def otlp_endpoint(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, SecretStr]: ...
    @property
    def service_name(self) -> str: ...


class OtlpSpans:
    """Spans exported with the OpenTelemetry SDK's batch processor and OTLP/HTTP exporter."""

    enabled = True

    def __init__(self, settings: TracingSettings) -> None:
        assert settings.otlp_endpoint is not None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        except ImportError:
            raise ConfigError(
                "tracing.otlp_endpoint needs the OpenTelemetry SDK: pip install 'hookbridge[otlp]'"
            ) from None
        headers = {name: value.get_secret_value() for name, value in settings.headers.items()}
        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, headers=headers, timeout=10)
        self._processor = BatchSpanProcessor(exporter, schedule_delay_millis=500)
        self._resource = Resource.create({"service.name": settings.service_name})
        self._scope = InstrumentationScope("hookbridge")

    def record(self, span: Span) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
        from opentelemetry.trace.status import Status, StatusCode

        trace_id = int(span.trace_id, 16)
        trace_flags = TraceFlags(int(span.flags, 16))
        context = SpanContext(trace_id, int(span.span_id, 16), False, trace_flags)
        parent = (
            SpanContext(trace_id, int(span.parent_id, 16), True, trace_flags)
            if span.parent_id is not None
            else None
        )
        links = [
            Link(
                SpanContext(
                    int(link.trace_id, 16),
                    int(link.span_id, 16),
                    True,
                    TraceFlags(int(link.flags, 16)),
                ),
                attributes=dict(link.attributes),
            )
            for link in span.links
        ]
        error = span.error
        readable = ReadableSpan(
            span.name,
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=dict(span.attributes),
            links=links,
            kind=SpanKind.CLIENT if span.client else SpanKind.CONSUMER,
            status=Status(StatusCode.ERROR, error) if error else Status(StatusCode.OK),
            start_time=int(span.start * 1e9),
            end_time=int(max(span.end, span.start) * 1e9),
            instrumentation_scope=self._scope,
        )
        self._processor.on_end(readable)

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout) and stop."""
        self._processor.shutdown()  # type: ignore[no-untyped-call]


def open_spans(settings: TracingSettings) -> Spans:
    if settings.otlp_endpoint is None:
        return NoSpans()
    spans = OtlpSpans(settings)
    log.info("exporting spans over OTLP", service=settings.service_name)
    return spans
