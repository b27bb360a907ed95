"""Event types of the operator's own and telemetry, in the pure core: normalise, rules, schemas."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import parse_config
from bridge.config.advice import config_warnings
from bridge.core.event_types import EventTypes
from bridge.core.events import CATALOGUE, Event
from bridge.core.normalise import Normalised, Normaliser, Rejected
from bridge.core.schema import event_schema, events_schema
from bridge.core.settings.event_types import EventTypeDeclaration
from bridge.errors import ConfigError
from tests.conftest import SECRET
from tests.support.normalising import (
    METER,
    SOURCE,
    accepted,
    message,
    normaliser,
    rejected,
)

ROOT = Path(__file__).resolve().parent.parent

DOOR = {"name": "door.opened"}  # no schema: any data
TELEMETRY = {"topics": ["devices/{device_id}/telemetry", "site/{site}/m/{device_id}/telemetry"]}

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


CUSTOM = normaliser(event_types=[METER, DOOR], telemetry=TELEMETRY)


# -- declared types ---------------------------------------------------------------------


def test_a_declared_type_comes_from_the_native_events_topic() -> None:
    event = accepted(
        CUSTOM.normalise(
            message("devices/m-7/events", {"type": "meter.read", "id": "r-1", "kwh": 2.5})
        )
    )
    assert event.type == "meter.read"
    assert event.data == {"device_id": "m-7", "kwh": 2.5}
    door = accepted(CUSTOM.normalise(message("devices/d-1/events", {"type": "door.opened"})))
    assert door.data == {"device_id": "d-1"}


def test_data_failing_the_schema_is_rejected_with_each_reason() -> None:
    detail = rejected(
        CUSTOM.normalise(
            message("devices/m-7/events", {"type": "meter.read", "kwh": -3, "unit": "J"})
        ),
        "invalid_fields",
    )
    assert detail == (
        "meter.read: data_schema: data.kwh: -3 is less than the minimum of 0; "
        "data.unit: 'J' is not one of ['kWh', 'Wh']"
    )
    missing = rejected(
        CUSTOM.normalise(message("devices/m-7/events", {"type": "meter.read"})), "invalid_fields"
    )
    assert missing == "meter.read: data_schema: data: 'kwh' is a required property"


def test_many_schema_errors_are_listed_five_and_counted() -> None:
    schema = {"type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(8)}}
    types = EventTypes([EventTypeDeclaration(name="x.y", data_schema=schema)])
    result = types.validate("x.y", {"device_id": "d", **{f"f{i}": i for i in range(8)}})
    assert isinstance(result, Rejected)
    assert result.detail.count("is not of type 'string'") == 5
    assert result.detail.endswith("and 3 more")


def test_an_undeclared_type_is_still_refused_and_bridge_types_too() -> None:
    detail = rejected(
        CUSTOM.normalise(message("devices/m-7/events", {"type": "meter.reed"})), "unknown_type"
    )
    assert "'meter.reed' is not in the event catalogue (nor declared under event_types)" in detail
    assert "made by the bridge" in rejected(
        CUSTOM.normalise(message("devices/m-7/events", {"type": "bridge.test"})), "unknown_type"
    )
    # Without the declaration, the same message is refused.
    rejected(
        normaliser().normalise(message("devices/m-7/events", {"type": "door.opened"})),
        "unknown_type",
    )


def test_event_types_know_the_catalogue_and_the_declared() -> None:
    types = EventTypes([EventTypeDeclaration.model_validate(METER)])
    assert types.names() == [*CATALOGUE, "meter.read"]
    assert "meter.read" in types.device_types()
    assert "bridge.test" not in types.device_types()
    assert types.is_device_type("telemetry.reported")


def test_rules_map_topics_to_declared_types_and_suggest_them() -> None:
    rule = {
        "topic": "meters/{device_id}/{what}",
        "type": {"from": "topic.what", "map": {"reading": "meter.read", "door": "door.opened"}},
        "data": {"kwh": "payload.kwh"},
    }
    bridge = normaliser(event_types=[METER, DOOR], rules=[rule])
    event = accepted(bridge.normalise(message("meters/m-1/reading", {"kwh": 7})))
    assert (event.type, event.data) == ("meter.read", {"device_id": "m-1", "kwh": 7})
    rejected(bridge.normalise(message("meters/m-1/reading", {"kwh": "x"})), "invalid_fields")
    with pytest.raises(ConfigError) as refused:
        normaliser(event_types=[METER], rules=[{**rule, "type": "meter.reed"}])
    assert refused.value.problems == [
        "rules[0].type: 'meter.reed' is not in the event catalogue (did you mean 'meter.read'?)"
    ]


def test_glob_warnings_know_the_declared_types() -> None:
    sub = {
        "name": "s",
        "url": "https://hooks.example.com/",
        "events": ["meter.*", "door.opned"],
        "secret": SECRET,  # signed: the one warning is the glob's
    }
    warnings = config_warnings(parse_config({"event_types": [METER, DOOR], "subscriptions": [sub]}))
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "subscriptions[0].events[1]: 'door.opned' matches no event type "
        "(did you mean 'door.opened'?)"
    )


@given(data=st.dictionaries(st.text(max_size=8), JSON, max_size=6))
def test_a_schema_never_makes_the_normaliser_raise(data: dict[str, Any]) -> None:
    payload = {**data, "type": "meter.read"}
    result = CUSTOM.normalise(message("devices/m-7/events", payload))
    if isinstance(result, Normalised):
        jsonschema.validate(result.event.data, METER["data_schema"])
    else:
        assert result.reason in {"invalid_fields", "invalid_json"}, result


# -- telemetry --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "data"),
    [
        ({"cpu": 12.5, "disks": [1, 2]}, {"cpu": 12.5, "disks": [1, 2]}),
        ("21.5", {"value": 21.5}),
        ('"ok"', {"value": "ok"}),
        ("[1, 2]", {"value": [1, 2]}),
        ("null", {"value": None}),
        ("not json at all", {"value": "not json at all"}),
        (b"", {"value": ""}),
        ({"type": "anything", "state": "x"}, {"type": "anything", "state": "x"}),
    ],
)
def test_telemetry_topics_carry_any_json(payload: object, data: dict[str, Any]) -> None:
    event = accepted(CUSTOM.normalise(message("devices/dev-1/telemetry", payload)))
    assert event.type == "telemetry.reported"
    assert event.data == {"device_id": "dev-1", **data}
    assert event.source == f"{SOURCE}/devices/dev-1/telemetry"


def test_telemetry_reads_id_time_and_named_levels() -> None:
    payload = {
        "id": "t-9",
        "occurred_at": "2026-11-22T11:00:00+07:00",
        "device_id": "dev-1",
        "v": 1,
    }
    event = accepted(CUSTOM.normalise(message("site/jkt/m/dev-1/telemetry", payload)))
    assert event.data == {"device_id": "dev-1", "site": "jkt", "v": 1}
    assert event.timestamp == datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
    again = accepted(CUSTOM.normalise(message("site/jkt/m/dev-1/telemetry", payload)))
    assert again.id == event.id  # the device's id: a redelivery is the same event
    detail = rejected(
        CUSTOM.normalise(message("devices/dev-1/telemetry", {"device_id": "dev-2"})),
        "invalid_fields",
    )
    assert "the payload says 'dev-2' but the topic says 'dev-1'" in detail


def test_telemetry_from_the_native_events_topic_without_configuration() -> None:
    native = normaliser()
    payload = {"type": "telemetry.reported", "temperature": 21.5, "os": 3, "seq": "x"}
    event = accepted(native.normalise(message("devices/dev-1/events", payload)))
    assert event.type == "telemetry.reported"
    # Any JSON: fields other types check (os, seq) are not checked here.
    assert event.data == {"device_id": "dev-1", "temperature": 21.5, "os": 3, "seq": "x"}
    assert "devices/+/telemetry" not in native.topic_filters()
    assert CUSTOM.topic_filters()[:2] == ["devices/+/telemetry", "site/+/m/+/telemetry"]


@given(document=JSON)
def test_every_json_payload_on_a_telemetry_topic_is_telemetry(document: object) -> None:
    # Encoded here: message() sends a str as the raw payload, and the text `true` is JSON.
    raw = orjson.dumps(document)
    event = accepted(CUSTOM.normalise(message("devices/dev-1/telemetry", raw)))
    assert event.type == "telemetry.reported"
    if isinstance(document, dict):
        kept = {k: v for k, v in document.items() if k not in {"id", "occurred_at", "device_id"}}
        assert {k: event.data[k] for k in kept} == kept
    else:
        assert event.data == {"device_id": "dev-1", "value": document}
    assert Event.from_json(event.body()).to_dict() == event.to_dict()


# -- schemas ----------------------------------------------------------------------------


def test_the_events_schema_includes_declared_types() -> None:
    declared = [EventTypeDeclaration.model_validate(d) for d in (METER, DOOR)]
    every = events_schema(declared)
    jsonschema.Draft202012Validator.check_schema(every)
    assert {"meter.read", "door.opened", "telemetry.reported"} <= set(every["$defs"])
    body = json.loads(
        accepted(
            CUSTOM.normalise(
                message("devices/m-7/events", {"type": "meter.read", "kwh": 1, "unit": "Wh"})
            )
        ).body()
    )
    jsonschema.validate(body, every)
    jsonschema.validate(body, event_schema("meter.read", declared))
    body["data"]["unit"] = "J"  # the declared schema, with its own $defs, is applied
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, every)
    del body["data"]["device_id"]
    body["data"]["unit"] = "Wh"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, event_schema("meter.read", declared))
    with pytest.raises(KeyError):
        event_schema("meter.read")


def test_the_worked_example_in_the_events_page() -> None:
    page = (ROOT / "docs" / "events.md").read_text(encoding="utf-8")
    section = page.split("## Event types of your own", 1)[1].split("\n## ", 1)[0]
    config = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))  # type: ignore[union-attr]
    shown = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))  # type: ignore[union-attr]
    good, bad = re.findall(r"`(\{\"id\".*?\})`", section)
    topic = re.search(r"on\n`([^`]+)` is delivered", section).group(1)  # type: ignore[union-attr]
    bridge = Normaliser(parse_config(config), source=SOURCE)
    event = accepted(bridge.normalise(message(topic, json.loads(good))))
    assert (event.type, event.source, event.data) == (shown["type"], shown["source"], shown["data"])
    detail = rejected(bridge.normalise(message(topic, json.loads(bad))), "invalid_fields")
    assert f"reason `{detail}`" in section.replace("\n", " ")


def test_a_telemetry_topic_that_takes_a_profile_topic_is_warned_about() -> None:
    shadowing = {"topics": ["devices/{device_id}/{kind}", "devices/{device_id}/telemetry"]}
    warnings = config_warnings(parse_config({"telemetry": shadowing}))
    telemetry = [w for w in warnings if w.startswith("telemetry.")]
    assert telemetry == [
        "telemetry.topics[0]: 'devices/{device_id}/{kind}' also matches devices/+/status of the "
        "native profile; its messages become telemetry.reported and the profile no longer "
        "reads them"
    ]
