"""OTLP export: a real OTLP/HTTP endpoint receives the receive and attempt spans."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.config import parse_config
from bridge.errors import ConfigError
from bridge.observe.otlp import open_spans
from bridge.observe.spans import NoSpans, receive_span_id
from tests.conftest import bridge_config, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import wait_until

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
DEVICE_SPAN = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP traces endpoint on 127.0.0.1: decodes and keeps every span."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.service_names: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    async def _traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in message.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    self.service_names.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return web.Response(status=200, content_type="application/x-protobuf", body=b"")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def named(self, name: str) -> list[Any]:
        return [s for s in self.spans if s.name == name]


def _attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        out[attribute.key] = (
            value.string_value if value.HasField("string_value") else value.int_value
        )
    return out


def test_export_is_off_without_an_endpoint() -> None:
    assert isinstance(open_spans(parse_config({}).tracing), NoSpans)
    with pytest.raises(ConfigError):  # only http(s) URLs
        parse_config({"tracing": {"otlp_endpoint": "collector:4318"}})


async def test_receive_and_attempt_spans_reach_an_otlp_endpoint(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    collector = Collector()
    await collector.start()
    receiver = Receiver(lambda _r, n: Answer(503) if n == 0 else Answer(200))
    await receiver.start()
    try:
        config = bridge_config(
            mosquitto,
            tmp_path,
            [{"name": "traced", "url": receiver.url}],
            tracing={"otlp_endpoint": collector.url, "service_name": "bridge-under-test"},
        )
        async with running_bridge(config):
            with Publisher(mosquitto.port) as device:
                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                properties.UserProperty = [("traceparent", f"00-{TRACE}-{DEVICE_SPAN}-01")]
                device.client.publish(
                    "devices/dev-otlp/status", "online", qos=1, properties=properties
                ).wait_for_publish(10)
                await wait_until(lambda: len(receiver.requests) >= 2, timeout=15)
        # The bridge flushes its spans when it stops.
        await wait_until(
            lambda: (
                len(collector.named("hookbridge.attempt")) >= 2
                and len(collector.named("hookbridge.receive")) >= 1
            ),
            timeout=15,
            message="spans exported",
        )
        assert collector.service_names == {"bridge-under-test"}
        event_id = receiver.requests[0].headers["webhook-id"]
        (receive,) = collector.named("hookbridge.receive")
        assert receive.trace_id.hex() == TRACE
        assert receive.parent_span_id.hex() == DEVICE_SPAN  # continues the device's span
        assert receive.span_id.hex() == receive_span_id(event_id)
        assert _attributes(receive)["hookbridge.event_id"] == event_id

        attempts = sorted(
            collector.named("hookbridge.attempt"), key=lambda s: s.start_time_unix_nano
        )
        header_spans = [
            re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", r.headers["traceparent"])
            for r in receiver.requests[:2]
        ]
        for span, header in zip(attempts, header_spans, strict=True):
            assert header is not None
            assert span.trace_id.hex() == TRACE == header.group(1)
            # The receiver's parent is the attempt span; the attempt's parent the receive span.
            assert span.span_id.hex() == header.group(2)
            assert span.parent_span_id == receive.span_id
            assert span.end_time_unix_nano >= span.start_time_unix_nano
        first, second = (_attributes(s) for s in attempts)
        assert (first["hookbridge.attempt"], first["http.response.status_code"]) == (1, 503)
        assert (second["hookbridge.attempt"], second["http.response.status_code"]) == (2, 200)
        assert first["hookbridge.subscription"] == "traced"
        assert attempts[0].status.code == 2  # STATUS_CODE_ERROR
        assert attempts[1].status.code != 2
    finally:
        await receiver.stop()
        await collector.stop()


async def test_a_batch_post_is_one_attempt_span_linked_to_every_event(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    collector = Collector()
    await collector.start()
    receiver = Receiver()
    await receiver.start()
    try:
        config = bridge_config(
            mosquitto,
            tmp_path,
            [
                {
                    "name": "batched",
                    "url": receiver.url,
                    "batch": {"max_events": 3, "max_wait": "2s"},
                }
            ],
            tracing={"otlp_endpoint": collector.url},
            presence={"enabled": False},
        )
        async with running_bridge(config):
            with Publisher(mosquitto.port) as device:
                properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                properties.UserProperty = [("traceparent", f"00-{TRACE}-{DEVICE_SPAN}-01")]
                for n, topic in enumerate(["devices/dev-a/events"] * 2 + ["devices/dev-b/events"]):
                    traced = properties if topic.endswith("a/events") else None
                    body = f'{{"type": "session.started", "id": "t-{n}"}}'
                    device.client.publish(topic, body, qos=1, properties=traced).wait_for_publish(
                        10
                    )
                await wait_until(
                    lambda: sum(len(r.json()["events"]) for r in receiver.requests) >= 3,
                    timeout=15,
                    message="the events delivered in batches",
                )
        await wait_until(
            lambda: (
                len(collector.named("hookbridge.attempt")) >= len(receiver.requests)
                and len(collector.named("hookbridge.receive")) >= 3
            ),
            timeout=15,
            message="spans exported",
        )
        receives = {
            _attributes(s)["hookbridge.event_id"]: s for s in collector.named("hookbridge.receive")
        }
        attempts = {s.span_id.hex(): s for s in collector.named("hookbridge.attempt")}
        assert len(attempts) == len(receiver.requests)  # one span per POST
        for request in receiver.requests:
            header = re.fullmatch(
                r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]", request.headers["traceparent"]
            )
            assert header is not None
            events = [e["id"] for e in request.json()["events"]]
            first = receives[events[0]]
            # The POST carries the first event's trace; its parent is the batch's span.
            span = attempts[header.group(2)]
            assert span.trace_id.hex() == header.group(1) == first.trace_id.hex()
            assert span.parent_span_id == first.span_id
            attributes = _attributes(span)
            assert attributes["hookbridge.batch_id"] == request.headers["webhook-id"]
            assert attributes["hookbridge.batch_size"] == len(events)
            assert attributes["http.response.status_code"] == 200
            # A link to each event's receive span, in that event's own trace.
            linked = [
                (link.trace_id.hex(), link.span_id.hex(), _attributes(link)["hookbridge.event_id"])
                for link in span.links
            ]
            assert linked == [
                (receives[e].trace_id.hex(), receives[e].span_id.hex(), e) for e in events
            ]
        traces = {s.trace_id.hex() for s in receives.values()}
        assert TRACE in traces
        assert len(traces) == 2  # the device's trace, and one started for dev-b's event
    finally:
        await receiver.stop()
        await collector.stop()
