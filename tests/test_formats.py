"""Payload formats, parsed back by independent libraries; signatures over the bytes sent."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
from cloudevents.v1.http import from_http
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from bridge.config import Settings
from bridge.core.events import Event
from bridge.core.formats import (
    encode_cloudevents,
    encode_cloudevents_binary,
    encode_form,
    encode_xml,
)
from bridge.core.signing import verify_hub_signature
from bridge.delivery.send import Sender
from tests.conftest import SECRET
from tests.support.receiver import Receiver

HUB_SECRET = "plain-shared-secret-for-hub"

EVENT = Event(
    id="evt_FORMATS1",
    type="session.started",
    timestamp=datetime(2026, 11, 22, 4, 36, 14, 553000, tzinfo=UTC),
    source="mqtt://broker-1/devices/dev-42/events",
    data={
        "device_id": "dev-42",
        "technician": "ayu <b>&\"'",
        "seq": 17,
        "ratio": 0.5,
        "ok": True,
        "none": None,
        "tags": ["a", 1, {"k": "v"}],
        "bell": "ring\x07ring",
        "nested": {"deep": {"x": "y"}},
    },
)


def _from_xml(element: ET.Element) -> Any:
    kind = element.get("type")
    text = element.text or ""
    if kind == "null":
        return None
    if kind == "boolean":
        return text == "true"
    if kind == "number":
        return json.loads(text)
    if kind == "string":
        if element.get("encoding") == "base64":
            return base64.b64decode(text).decode("utf-8", "surrogatepass")
        return text
    if kind == "array":
        return [_from_xml(item) for item in element]
    if kind == "object":
        return {_field_name(f): _from_xml(f) for f in element}
    raise AssertionError(f"unknown type {kind}")


def _field_name(element: ET.Element) -> str:
    name = element.get("name", "")
    if element.get("name_encoding") == "base64":
        return base64.b64decode(name).decode("utf-8", "surrogatepass")
    return name


def _parse_xml(body: bytes) -> dict[str, Any]:
    root = ET.fromstring(body)
    assert root.tag == "event"
    timestamp = root.find("timestamp")
    source = root.find("source")
    data = root.find("data")
    assert timestamp is not None and source is not None and data is not None
    return {
        "id": root.get("id"),
        "type": root.get("type"),
        "schema_version": int(root.get("schema_version", "0")),
        "timestamp": timestamp.text,
        "source": source.text,
        "data": {_field_name(f): _from_xml(f) for f in data},
    }


def test_xml_is_the_envelope() -> None:
    encoded = encode_xml(EVENT)
    assert encoded.content_type == "application/xml"
    assert encoded.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert _parse_xml(encoded.body) == EVENT.to_dict()


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), _JSON, max_size=6))
def test_xml_round_trips_any_json_data(data: dict[str, Any]) -> None:
    event = Event(EVENT.id, EVENT.type, EVENT.timestamp, EVENT.source, data)
    assert _parse_xml(encode_xml(event).body)["data"] == json.loads(json.dumps(data))


def test_form_holds_the_json_envelope() -> None:
    encoded = encode_form(EVENT)
    assert encoded.content_type == "application/x-www-form-urlencoded"
    fields = parse_qs(encoded.body.decode("ascii"), strict_parsing=True)
    assert list(fields) == ["payload"]
    assert json.loads(fields["payload"][0]) == EVENT.to_dict()


def test_cloudevents_structured_parsed_by_the_sdk() -> None:
    encoded = encode_cloudevents(EVENT)
    assert encoded.content_type == "application/cloudevents+json"
    parsed = from_http({"content-type": encoded.content_type}, encoded.body)
    assert parsed["specversion"] == "1.0"
    assert parsed["id"] == EVENT.id
    assert parsed["type"] == EVENT.type
    assert parsed["source"] == EVENT.source
    assert parsed["subject"] == "dev-42"
    assert parsed["time"] == "2026-11-22T04:36:14.553Z"
    assert parsed["datacontenttype"] == "application/json"
    assert parsed.data == EVENT.data


def test_cloudevents_binary_parsed_by_the_sdk() -> None:
    encoded = encode_cloudevents_binary(EVENT)
    headers = {"content-type": encoded.content_type, **encoded.extra_headers}
    parsed = from_http(headers, encoded.body)
    assert parsed["id"] == EVENT.id
    assert parsed["type"] == EVENT.type
    assert parsed["source"] == EVENT.source
    assert parsed.data == EVENT.data
    assert json.loads(encoded.body) == EVENT.data


def test_cloudevents_binary_percent_encodes_header_values() -> None:
    odd = Event("evt_x", "device.online", EVENT.timestamp, "mqtt://b/devices/ä b/status", {})
    headers = encode_cloudevents_binary(odd).extra_headers
    assert headers["ce-source"] == "mqtt://b/devices/%C3%A4%20b/status"
    assert unquote(headers["ce-source"]) == odd.source
    assert all(value.isascii() and " " not in value for value in headers.values())


@pytest.fixture
async def sender() -> AsyncIterator[Sender]:
    settings = Settings.model_validate({"security": {"allow_private_targets": True}})
    instance = Sender(settings, user_agent="hookbridge/test")
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


@pytest.mark.parametrize("fmt", ["json", "xml", "form", "cloudevents", "cloudevents-binary"])
async def test_signatures_cover_the_exact_bytes_sent(
    fmt: str, sender: Sender, receiver: Receiver
) -> None:
    settings = Settings.model_validate(
        {
            "subscriptions": [
                {
                    "name": "fmt",
                    "url": receiver.url,
                    "format": fmt,
                    "secret": [SECRET, HUB_SECRET],
                    "hub_signature": True,
                }
            ]
        }
    )
    subscription = settings.subscriptions[0]
    result = await sender.attempt(subscription, EVENT, delivery_id="dlv_f", attempt=1)
    assert result.outcome == "delivered", result.error
    (request,) = receiver.requests
    # The reference library signs the exact body; its verify() would also parse it as JSON.
    stamp = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
    expected = Webhook(SECRET).sign(EVENT.id, stamp, request.body.decode("utf-8"))
    assert expected in request.headers["webhook-signature"].split()
    # x-hub-signature-256 uses the first secret's raw bytes, as GitHub does
    verify_hub_signature(SECRET, request.headers["x-hub-signature-256"], request.body)
    if fmt.startswith("cloudevents"):
        assert from_http(request.headers, request.body)["id"] == EVENT.id
    elif fmt == "xml":
        assert _parse_xml(request.body)["id"] == EVENT.id
    elif fmt == "form":
        assert json.loads(parse_qs(request.body.decode())["payload"][0])["id"] == EVENT.id
    else:
        assert json.loads(request.body)["id"] == EVENT.id
