"""The normaliser: native topics, every catalogue type, every rejection reason, never raising."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import Settings
from bridge.core import events, profiles
from bridge.core.events import CATALOGUE, Event
from bridge.core.normalise import Message, Normalised, Normaliser, Rejected, parse_occurred_at
from bridge.core.profiles import Draft, Payload, known_profiles, load_profiles, register_profile
from bridge.errors import ConfigError
from tests.support.normalising import (
    RECEIVED,
    SOURCE,
    accepted,
    message,
    normaliser,
    rejected,
)

NATIVE = normaliser()


# --- every catalogue type through the native topics -----------------------------------

SAMPLES: dict[str, dict[str, Any]] = {
    "device.added": {"device_name": "Front desk PC", "os": "Windows 11", "group": "jakarta"},
    "device.deleted": {"device_name": "Front desk PC"},
    "device.online": {"reason": "boot"},
    "device.offline": {"reason": "shutdown"},
    "session.started": {
        "session_id": "s-981",
        "technician": "ayu",
        "customer": "PT Maju",
        "customer_email": "it@maju.example",
    },
    "session.ended": {"session_id": "s-981", "technician": "ayu", "duration_s": 812.5},
    "session.scheduled": {"session_id": "s-990", "scheduled_for": "2026-11-23T09:00:00Z"},
    "session.customer_joined": {"session_id": "s-981", "customer": "Budi"},
    "file_transfer.started": {
        "session_id": "s-981",
        "transfer_id": "t-1",
        "file_name": "report.pdf",
        "size_bytes": 48213,
        "direction": "upload",
    },
    "file_transfer.completed": {"transfer_id": "t-1", "size_bytes": 48213, "direction": "upload"},
    "file_transfer.failed": {
        "transfer_id": "t-2",
        "direction": "download",
        "reason": "disk_full",
        "error": "ENOSPC",
    },
    "bulk_deployment.started": {
        "deployment_id": "dep-7",
        "package": "agent-4.2",
        "target_count": 120,
    },
    "bulk_deployment.completed": {
        "deployment_id": "dep-7",
        "target_count": 120,
        "succeeded": 118,
        "failed": 2,
    },
    "bulk_deployment.failed": {"deployment_id": "dep-8", "reason": "timeout", "error": "no agent"},
    "telemetry.reported": {"cpu_percent": 12.5, "disks": [{"mount": "C:", "free_gb": 41}]},
}
DEVICE_TYPES = sorted(t for t in CATALOGUE if not t.startswith("bridge."))


def test_samples_cover_the_catalogue() -> None:
    assert sorted(SAMPLES) == DEVICE_TYPES


@pytest.mark.parametrize("event_type", DEVICE_TYPES)
def test_every_device_type_through_the_events_topic(event_type: str) -> None:
    fields = SAMPLES[event_type]
    payload = {
        "type": event_type,
        "id": "m-1",
        "occurred_at": "2026-11-22T11:36:14+07:00",
        "seq": 17,
    }
    event = accepted(NATIVE.normalise(message("devices/dev-42/events", {**payload, **fields})))
    assert event.type == event_type
    assert event.source == f"{SOURCE}/devices/dev-42/events"
    assert event.timestamp == datetime(2026, 11, 22, 4, 36, 14, tzinfo=UTC)
    assert event.data == {"device_id": "dev-42", "seq": 17, **fields}
    assert event.id == events.event_id_for(event.source, "dev-42", "m-1")
    # The envelope encodes and reads back unchanged: what the store and sender rely on.
    assert Event.from_json(event.body()).to_dict() == event.to_dict()


@pytest.mark.parametrize(
    ("payload", "event_type"),
    [
        ("online", "device.online"),
        ("  OFFLINE\n", "device.offline"),
        ('"online"', "device.online"),
        ({"state": "Offline", "reason": "lwt"}, "device.offline"),
    ],
)
def test_status_topic(payload: str | dict[str, Any], event_type: str) -> None:
    result = NATIVE.normalise(message("devices/dev-42/status", payload, retain=True))
    event = accepted(result)
    assert event.type == event_type
    assert event.data["device_id"] == "dev-42"
    assert "state" not in event.data
    assert event.timestamp == RECEIVED


@pytest.mark.parametrize(
    ("action", "event_type"), [("added", "device.added"), ("deleted", "device.deleted")]
)
def test_lifecycle_topic(action: str, event_type: str) -> None:
    payload = {"action": action, "device_name": "Kiosk 3", "os": "Ubuntu 24.04"}
    event = accepted(NATIVE.normalise(message("devices/kiosk-3/lifecycle", payload)))
    assert event.type == event_type
    assert event.data == {"device_id": "kiosk-3", "device_name": "Kiosk 3", "os": "Ubuntu 24.04"}


def test_extra_fields_are_kept_as_sent() -> None:
    payload = {"type": "device.online", "firmware": {"version": "1.2.3"}, "note": None, "n": 0}
    event = accepted(NATIVE.normalise(message("devices/d1/events", payload)))
    assert event.data == {"device_id": "d1", "firmware": {"version": "1.2.3"}, "note": None, "n": 0}


def test_payload_device_id_may_repeat_the_topic() -> None:
    for claimed in ("42", 42):
        payload = {"type": "device.online", "device_id": claimed}
        assert accepted(NATIVE.normalise(message("devices/42/events", payload))).device_id == "42"


# --- ids and timestamps --------------------------------------------------------------------


def test_same_device_message_gives_the_same_event_id() -> None:
    payload = {"type": "session.started", "id": 981}
    first = NATIVE.normalise(message("devices/d1/events", payload))
    again = NATIVE.normalise(message("devices/d1/events", payload, dup=True))
    assert isinstance(first, Normalised)
    assert isinstance(again, Normalised)
    assert first.event.id == again.event.id
    assert first.content_hash is None
    other_broker = Normaliser(Settings(), source="mqtt://broker-2:1883")
    assert (
        accepted(other_broker.normalise(message("devices/d1/events", payload))).id != first.event.id
    )


def test_without_device_id_a_content_hash_recognises_redelivery() -> None:
    msg = message("devices/d1/status", "online")
    # Ingest mints an id at receipt: two receipts of the same bytes are two events.
    first = NATIVE.normalise(dataclasses.replace(msg, receipt_id="evt_first"))
    again = NATIVE.normalise(dataclasses.replace(msg, receipt_id="evt_again"))
    assert isinstance(first, Normalised)
    assert isinstance(again, Normalised)
    assert first.content_hash == events.content_hash(msg.topic, msg.payload)
    assert again.content_hash == first.content_hash
    assert (first.event.id, again.event.id) == ("evt_first", "evt_again")
    # Without one, the id follows from the content and the time: the core mints nothing.
    derived = accepted(NATIVE.normalise(msg))
    assert derived.id == accepted(NATIVE.normalise(msg)).id
    assert derived.id.startswith("evt_")


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        ("2026-11-22T04:36:14.553Z", RECEIVED),
        ("2026-11-22T11:36:14.553+07:00", RECEIVED),
        (1795322174.553, RECEIVED),
        (1795322174553, RECEIVED),
        (1795322174, RECEIVED.replace(microsecond=0)),
    ],
)
def test_occurred_at_becomes_the_timestamp(occurred_at: object, expected: datetime) -> None:
    payload = {"type": "device.online", "occurred_at": occurred_at}
    event = accepted(NATIVE.normalise(message("devices/d1/events", payload)))
    assert abs(event.timestamp - expected) < timedelta(milliseconds=1)
    assert event.timestamp.tzinfo is not None
    assert event.timestamp.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("yesterday", "not an RFC 3339 time"),
        ("2026-11-22T04:36:14", "no UTC offset"),
        (1e300, "outside the range"),
        (True, "not boolean"),
        ({"at": 1}, "not object"),
        ("0001-01-01T00:00:00+01:00", "outside the range"),
    ],
)
def test_invalid_occurred_at(value: object, words: str) -> None:
    detail = rejected(
        NATIVE.normalise(
            message("devices/d1/events", {"type": "device.online", "occurred_at": value})
        ),
        "invalid_fields",
    )
    assert "occurred_at" in detail
    assert words in detail
    assert isinstance(parse_occurred_at(value), str)


def test_parse_occurred_at_keeps_the_instant() -> None:
    jakarta = timezone(timedelta(hours=7))
    moment = parse_occurred_at("2026-11-22T11:36:14+07:00")
    assert moment == datetime(2026, 11, 22, 11, 36, 14, tzinfo=jakarta)


# --- every rejection reason ----------------------------------------------------------------


def test_too_large_is_checked_before_decoding() -> None:
    small = normaliser(limits={"max_payload": 64})
    detail = rejected(small.normalise(message("nowhere", b"\xff" * 65)), "too_large")
    assert "65" in detail
    assert "limits.max_payload is 64" in detail
    assert isinstance(
        small.normalise(message("devices/d1/status", b"online".ljust(64))), Normalised
    )


def test_topic_too_long() -> None:
    short = normaliser(limits={"max_topic_length": 20})
    detail = rejected(
        short.normalise(message("devices/abcdefghijkl/status", "online")), "topic_too_long"
    )
    assert "max_topic_length is 20" in detail


@pytest.mark.parametrize(
    "msg",
    [
        message("devices/d1/status", b"\xffonline"),
        message("devices/d1/events", b'{"type": "device.online", "x": "\xc3"}'),
        message("devices/d\udcff1/status", "online"),
    ],
)
def test_invalid_utf8(msg: Message) -> None:
    assert "UTF-8" in rejected(NATIVE.normalise(msg), "invalid_utf8")


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("devices/d1/events", b'{"type": "device.online"'),
        ("devices/d1/events", b"online"),
        ("devices/d1/events", b'["device.online"]'),
        ("devices/d1/lifecycle", b"added"),
        ("devices/d1/status", b"42"),
        ("devices/d1/status", b'["online"]'),
    ],
)
def test_invalid_json(topic: str, payload: bytes) -> None:
    assert "JSON" in rejected(NATIVE.normalise(message(topic, payload)), "invalid_json")


@pytest.mark.parametrize(
    "topic",
    [
        "weather/jakarta",
        "devices/d1/telemetry",
        "devices/d1/status/extra",
        "/devices/d1/status",
        "devices//status",
        "devices/d+1/status",
        "devices/#/status",
        "",
    ],
)
def test_unknown_topic(topic: str) -> None:
    rejected(NATIVE.normalise(message(topic, "online")), "unknown_topic")


@pytest.mark.parametrize(
    ("topic", "payload", "words"),
    [
        ("devices/d1/events", {"type": "device.exploded"}, "'device.exploded' is not in the event"),
        ("devices/d1/events", {"type": "bridge.test"}, "made by the bridge itself"),
        ("devices/d1/lifecycle", {"action": "moved"}, "'moved'"),
        ("devices/d1/status", "rebooting", "'rebooting'"),
        ("devices/d1/status", {"state": "sleeping"}, "'sleeping'"),
    ],
)
def test_unknown_type(topic: str, payload: Any, words: str) -> None:
    assert words in rejected(NATIVE.normalise(message(topic, payload)), "unknown_type")


@pytest.mark.parametrize(
    ("topic", "payload", "words"),
    [
        (
            "devices/d1/events",
            {"type": "file_transfer.started", "size_bytes": "lots"},
            "size_bytes: Input should be a valid integer",
        ),
        (
            "devices/d1/events",
            {"type": "file_transfer.failed", "direction": "sideways"},
            "direction: Input should be 'upload' or 'download'",
        ),
        (
            "devices/d1/events",
            {"type": "device.online", "device_id": "d2"},
            "'d2' but the topic says 'd1'",
        ),
        ("devices/d1/events", {"type": "device.online", "id": 1.5}, "id: must be"),
        ("devices/d1/events", {"type": "device.online", "id": ""}, "id: must be"),
        ("devices/d1/events", {"device_name": "x"}, "type: missing"),
        ("devices/d1/events", {"type": 7}, "type: must be a string"),
        ("devices/d1/lifecycle", {"action": None}, "action: missing"),
        ("devices/d1/status", {"reason": "x"}, "state: missing"),
        ("devices/d1/status", {"state": True}, "state: must be a string"),
        ("devices/" + "x" * 300 + "/status", "online", "device_id: String should have at most 256"),
    ],
)
def test_invalid_fields(topic: str, payload: Any, words: str) -> None:
    assert words in rejected(NATIVE.normalise(message(topic, payload)), "invalid_fields")


def test_every_invalid_field_is_named() -> None:
    payload = {"type": "file_transfer.failed", "direction": "sideways", "seq": -1}
    detail = rejected(NATIVE.normalise(message("devices/d1/events", payload)), "invalid_fields")
    assert "direction: Input should be 'upload' or 'download'" in detail
    assert "seq: Input should be greater than or equal to 0" in detail


def test_too_deep() -> None:
    nested: dict[str, Any] = {"type": "device.online"}
    inner = nested
    for _ in range(40):
        inner["x"] = {}
        inner = inner["x"]
    assert "32" in rejected(NATIVE.normalise(message("devices/d1/events", nested)), "too_deep")
    # Beyond the JSON parser's own recursion limit, the reason is the same.
    deep = b'{"type": "device.online", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    rejected(NATIVE.normalise(message("devices/d1/events", deep)), "too_deep")


def test_too_many_fields_counts_keys_over_the_whole_document() -> None:
    # 3 keys at the top, 2 in "a", 6 in the list's objects: 11 > 10.
    small = normaliser(limits={"max_fields": 10})
    payload = {"type": "device.online", "a": {"b": 1, "c": 2}, "list": [{"k": i} for i in range(6)]}
    assert len(orjson.dumps(payload)) < 200
    detail = rejected(small.normalise(message("devices/d1/events", payload)), "too_many_fields")
    assert "10" in detail
    assert "max_fields" in detail


def test_missing_device_id_from_a_rule() -> None:
    rules = [
        {"topic": "acme/{kind}", "type": "device.online", "data": {"device_id": "payload.serial"}}
    ]
    detail = rejected(
        normaliser(rules=rules).normalise(message("acme/x", {"other": 1})), "missing_device_id"
    )
    assert "rules[0]" in detail


def test_details_never_echo_huge_input() -> None:
    for payload in ({"type": "x" * 10_000}, {"state": "y" * 10_000}):
        topic = "devices/d1/events" if "type" in payload else "devices/d1/status"
        result = NATIVE.normalise(message(topic, payload))
        assert isinstance(result, Rejected)
        assert len(result.detail) < 300
    result = NATIVE.normalise(message("z" * 1000, "online"))
    assert isinstance(result, Rejected)
    assert len(result.detail) < 300


class ExplodingProfile:
    """A plugin profile with a bug: the normaliser must survive it."""

    @property
    def name(self) -> str:
        return "exploding"

    def topic_filters(self) -> list[str]:
        return ["boom/+"]

    def match(self, levels: Sequence[str]) -> Mapping[str, str] | None:
        return {"device_id": levels[1]} if levels[0] == "boom" else None

    def interpret(self, named: Mapping[str, str], payload: Payload) -> Draft | Rejected:
        raise RuntimeError("plugin bug")


def test_a_failing_profile_is_a_rejection_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    # A private copy of the registry, so the test profile does not outlive this test.
    monkeypatch.setattr(profiles, "_REGISTRY", dict(profiles._REGISTRY))
    register_profile("exploding", ExplodingProfile)
    assert "exploding" in known_profiles()
    bridge = normaliser(profiles=["exploding", "native"])
    assert bridge.topic_filters() == [
        "boom/+",
        "devices/+/status",
        "devices/+/events",
        "devices/+/lifecycle",
    ]
    assert "RuntimeError" in rejected(bridge.normalise(message("boom/d1", "{}")), "internal_error")
    assert (
        accepted(bridge.normalise(message("devices/d1/status", "online"))).type == "device.online"
    )


# --- configuration -------------------------------------------------------------------------


def test_unknown_profile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'mosquitto_sys'"):
        normaliser(profiles=["native", "mosquitto_sys"])


def test_profiles_listed_twice_load_once() -> None:
    assert len(load_profiles(["native", "native"])) == 1


def test_native_topic_filters() -> None:
    assert NATIVE.topic_filters() == ["devices/+/status", "devices/+/events", "devices/+/lifecycle"]
    assert normaliser(profiles=[]).topic_filters() == []


# --- never raises --------------------------------------------------------------------------

# Surrogates stand for invalid UTF-8 on the wire; drawn often, not by chance alone.
_ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()) | (
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
)
_TOPIC_LEVELS = st.sampled_from(
    ["devices", "status", "events", "lifecycle", "d1", "", "+", "#", "\udcff", "é"]
)
TOPICS = st.one_of(
    st.text(_ANY_CHAR, max_size=40),
    st.lists(st.one_of(_TOPIC_LEVELS, st.text(_ANY_CHAR, max_size=5)), max_size=5).map("/".join),
    st.sampled_from(["devices/d1/status", "devices/d1/events", "devices/d1/lifecycle"]),
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
NATIVE_OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(sorted(CATALOGUE)) | JSON,
        "action": st.sampled_from(["added", "deleted"]) | JSON,
        "state": st.sampled_from(["online", "offline"]) | JSON,
        "id": JSON,
        "occurred_at": st.sampled_from(["2026-11-22T04:36:14Z"]) | JSON,
        "device_id": st.sampled_from(["d1"]) | JSON,
        "seq": JSON,
        "size_bytes": JSON,
        "scheduled_for": JSON,
        "direction": JSON,
    },
).flatmap(
    lambda base: st.dictionaries(st.text(max_size=8), JSON, max_size=3).map(
        lambda extra: {**extra, **base}
    )
)
RULED = normaliser(
    rules=[
        {
            "topic": "site/{site}/{device_id}/{action}",
            "type": {"from": "topic.action", "map": {"connect": "session.started"}},
            "data": {"user": "payload.user", "seq": "payload.seq"},
            "id": "payload.id",
            "occurred_at": "payload.at",
        }
    ]
)


def check_outcome(result: Normalised | Rejected) -> None:
    if isinstance(result, Rejected):
        assert result.reason
        assert result.detail
        assert result.reason != "internal_error", result
        orjson.dumps(result.detail)  # loggable: no lone surrogates
    else:
        assert result.event.body()  # encodable as it will be sent
        assert result.event.device_id


@settings(max_examples=400, deadline=None)
@given(topic=TOPICS, payload=st.binary(max_size=200))
def test_never_raises_on_any_topic_and_bytes(topic: str, payload: bytes) -> None:
    for bridge in (NATIVE, RULED):
        check_outcome(bridge.normalise(Message(topic, payload, RECEIVED)))


@settings(max_examples=400, deadline=None)
@given(
    topic=st.sampled_from(
        ["devices/d1/status", "devices/d1/events", "devices/d1/lifecycle", "site/a/d1/connect"]
    ),
    document=JSON | NATIVE_OBJECTS,
)
def test_never_raises_on_any_json(topic: str, document: Any) -> None:
    payload = orjson.dumps(document)
    for bridge in (NATIVE, RULED):
        check_outcome(bridge.normalise(Message(topic, payload, RECEIVED)))
