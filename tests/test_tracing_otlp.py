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
from bridge.tracing import NoSpans, open_spans, receive_span_id
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
