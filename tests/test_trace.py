"""W3C trace context: parsed and formatted in the core, carried on every webhook."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from standardwebhooks import Webhook

from bridge.core.trace import (
    EventContext,
    TraceParent,
    context_for,
    format_traceparent,
    new_span_id,
    parse_traceparent,
    trace_of,
)
from tests.conftest import SECRET, bridge_config, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, receiving
from tests.support.waiting import wait_until

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def test_parse_traceparent_accepts_only_the_w3c_format() -> None:
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-01") == TraceParent(TRACE, SPAN, "01")
    for bad in [
        None,
        "",
        f"01-{TRACE}-{SPAN}-01",  # unknown version
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper case
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-1",
        f"00-{TRACE}-{SPAN}-01-extra",
    ]:
        assert parse_traceparent(bad) is None, bad


def test_context_continues_a_valid_trace_or_starts_one() -> None:
    entropy = bytes(range(1, 17))
    continued = context_for(
        [("traceparent", f"00-{TRACE}-{SPAN}-00"), ("tracestate", "vendor=a")], entropy=entropy
    )
    assert (continued.trace_id, continued.parent_id, continued.trace_flags) == (TRACE, SPAN, "00")
    assert continued.tracestate == "vendor=a"
    started = context_for([("traceparent", "garbage"), ("tracestate", "x=1")], entropy=entropy)
    assert started.trace_id == entropy.hex() and started.parent_id is None
    assert started.tracestate is None  # a state belongs to the trace it came with
    zero = context_for([], entropy=bytes(16))
    assert zero.trace_id is not None and zero.trace_id != "0" * 32
    assert new_span_id(bytes(8)) != "0" * 16
    with pytest.raises(ValueError, match="entropy"):
        context_for([], entropy=b"short")


def test_context_round_trips_through_json_exactly() -> None:
    context = EventContext(
        trace_id=TRACE,
        parent_id=SPAN,
        tracestate="a=b",
        response_topic="replies/x",
        correlation_data=b"\x00\xff\x80bytes",
    )
    assert EventContext.from_json(context.to_json()) == context
    assert EventContext.from_json(None) is None
    assert EventContext.from_json(b"not json") is None


def test_an_event_without_a_stored_trace_gets_a_stable_one() -> None:
    first = trace_of("evt_1", None)
    assert first == trace_of("evt_1", EventContext(response_topic="r"))
    assert first.trace_id != trace_of("evt_2", None).trace_id
    assert VALID.match(format_traceparent(first.trace_id, new_span_id(b"12345678")))
    assert trace_of("evt_1", EventContext(trace_id=TRACE)).trace_id == TRACE


def _with_user_properties(*pairs: tuple[str, str]) -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = list(pairs)
    return properties


async def test_webhooks_carry_the_devices_trace_or_one_started_at_receipt(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    def answers(request: Any, _n: int) -> Answer:
        device = request.json()["data"]["device_id"]
        attempt = int(request.headers["hookbridge-attempt"])
        return Answer(503) if device == "dev-retry" and attempt == 1 else Answer(200)

    async with receiving(answers) as receiver:
        sub = {"name": "traced", "url": receiver.url, "secret": SECRET}
        async with running_bridge(bridge_config(mosquitto, tmp_path, [sub])) as bridge:
            with Publisher(mosquitto.port) as device:
                sent = [
                    device.client.publish(
                        "devices/dev-traced/status",
                        "online",
                        qos=1,
                        properties=_with_user_properties(
                            ("traceparent", f"00-{TRACE}-{SPAN}-01"), ("tracestate", "dev=1")
                        ),
                    ),
                    device.client.publish(
                        "devices/dev-invalid/status",
                        "online",
                        qos=1,
                        properties=_with_user_properties(
                            ("traceparent", f"00-{'0' * 32}-{SPAN}-01")
                        ),
                    ),
                    device.client.publish("devices/dev-retry/status", "online", qos=1),
                ]
                for info in sent:
                    info.wait_for_publish(10)
                await wait_until(lambda: len(receiver.requests) >= 4, timeout=20)

            verifier = Webhook(SECRET)
            by_device: dict[str, list[Any]] = {}
            for request in receiver.requests:
                envelope = verifier.verify(request.body, request.headers)  # still signed
                assert "traceparent" not in envelope and "context" not in envelope
                by_device.setdefault(envelope["data"]["device_id"], []).append(request)

            (traced,) = by_device["dev-traced"]
            match = VALID.match(traced.headers["traceparent"])
            assert match is not None
            assert match.group(1) == TRACE  # the device's trace continues
            assert match.group(2) != SPAN  # in a span of the bridge's own
            assert traced.headers["tracestate"] == "dev=1"

            (invalid,) = by_device["dev-invalid"]
            match = VALID.match(invalid.headers["traceparent"])
            assert match is not None and match.group(1) != "0" * 32
            assert "tracestate" not in invalid.headers

            first, retry = by_device["dev-retry"]
            parents = [VALID.match(r.headers["traceparent"]) for r in (first, retry)]
            assert all(p is not None for p in parents)
            trace_ids = {p.group(1) for p in parents if p is not None}
            span_ids = {p.group(2) for p in parents if p is not None}
            assert len(trace_ids) == 1 and trace_ids != {TRACE}  # one trace for the event
            assert len(span_ids) == 2  # a new span per attempt

            def freshness_count() -> float:
                count = re.search(
                    r'^hookbridge_delivery_freshness_seconds_count\{subscription="traced"\} (\S+)$',
                    bridge.metrics.render().decode(),
                    re.MULTILINE,
                )
                return 0.0 if count is None else float(count.group(1))

            # Counted once the bridge has the receiver's answer, a moment after the receiver.
            await wait_until(lambda: freshness_count() >= 3.0, message="three delivered counted")
            assert freshness_count() == 3.0
