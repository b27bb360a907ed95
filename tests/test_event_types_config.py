"""Declared event types and telemetry topics in the configuration, through the real CLI.

Each invalid declaration is refused by ``hookbridge check-config`` with its
place and reason, ``run`` stops with the same lines, and a running bridge's
reload refuses it too, while a valid change of declarations applies at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import SECRET, running_bridge
from tests.support.admin import admin_client, admin_config
from tests.support.cli import (
    check_config_refuses,
    run_cli,
    run_refuses_like_check_config,
)
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

PUBLIC = "https://hooks.example.com/in"
METER = {
    "name": "meter.read",
    "data_schema": {"type": "object", "required": ["kwh"]},
}


def _write(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


BROKEN: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "a name under bridge.",
        {"event_types": [{"name": "bridge.custom"}]},
        ["event_types[0].name: 'bridge.custom': types under bridge. are the bridge's own"],
    ),
    (
        "a catalogue name",
        {"event_types": [{"name": "device.online"}]},
        ["event_types[0].name: 'device.online' is already in the event catalogue"],
    ),
    (
        "telemetry.reported is a catalogue name too",
        {"event_types": [{"name": "telemetry.reported"}]},
        ["event_types[0].name: 'telemetry.reported' is already in the event catalogue"],
    ),
    (
        "names not shaped like the catalogue's",
        {"event_types": [{"name": "Meter.Read"}, {"name": "meter"}, {"name": "meter read.x"}]},
        [
            "event_types[0].name: 'Meter.Read' is not a type name: write <noun>.<verb> in "
            "lowercase",
            "event_types[1].name: 'meter' is not a type name",
            "event_types[2].name: 'meter read.x' is not a type name",
        ],
    ),
    (
        "a name declared twice",
        {"event_types": [METER, {"name": "meter.read"}]},
        ["event_types[1].name: 'meter.read' is already the name of event_types[0]"],
    ),
    (
        "an invalid JSON Schema",
        {"event_types": [{"name": "meter.read", "data_schema": {"type": "objekt"}}]},
        ["event_types[0].data_schema: not a valid JSON Schema (at type): 'objekt' is not valid"],
    ),
    (
        "an invalid keyword deep in the schema",
        {
            "event_types": [
                {
                    "name": "meter.read",
                    "data_schema": {"properties": {"kwh": {"minimum": "zero"}}},
                }
            ]
        },
        [
            "event_types[0].data_schema: not a valid JSON Schema (at properties.kwh.minimum): "
            "'zero' is not of type 'number'"
        ],
    ),
    (
        "a schema that would fetch a reference",
        {
            "event_types": [
                {
                    "name": "meter.read",
                    "data_schema": {"$ref": "https://schemas.example.com/meter.json"},
                }
            ]
        },
        ["event_types[0].data_schema: $ref: the schema must be self-contained"],
    ),
    (
        "an unknown dialect",
        {
            "event_types": [
                {"name": "meter.read", "data_schema": {"$schema": "https://example.com/s"}}
            ]
        },
        ["event_types[0].data_schema: $schema 'https://example.com/s' is not a JSON Schema"],
    ),
    (
        "a key typo",
        {"event_types": [{"name": "meter.read", "schema": {}}]},
        ["event_types[0].schema: Extra inputs are not permitted (did you mean 'data_schema'?)"],
    ),
    (
        "a rule mapping to a type not declared",
        {
            "event_types": [METER],
            "rules": [{"topic": "m/{device_id}", "type": "meter.reed"}],
        },
        ["rules[0].type: 'meter.reed' is not in the event catalogue (did you mean 'meter.read'?)"],
    ),
    (
        "telemetry topics with wildcards, without a device, with a broken level",
        {"telemetry": {"topics": ["devices/+/telemetry", "meters/{site}", "t/{device_id}x"]}},
        [
            "telemetry.topics[0]: write the device's level as {device_id}",
            "telemetry.topics[1]: no {device_id} level",
            "telemetry.topics[2]: level '{device_id}x' must be literal text or one whole {name}",
        ],
    ),
]


@pytest.mark.parametrize(
    ("document", "expected"), [(d, e) for _, d, e in BROKEN], ids=[n for n, _, _ in BROKEN]
)
def test_check_config_refuses_invalid_declarations(
    tmp_path: Path, document: dict[str, Any], expected: list[str]
) -> None:
    path = _write(tmp_path / "hookbridge.yaml", document)
    check_config_refuses(path, [f"  {line}" for line in expected])


def test_run_refuses_an_invalid_declaration_with_the_same_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "hookbridge.yaml",
        {"event_types": [{"name": "bridge.mine"}, {"name": "x.y", "data_schema": {"type": 3}}]},
    )
    run_refuses_like_check_config(path, "event_types", problems=2)


def test_a_valid_declaration_is_summarised_and_its_globs_do_not_warn(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "hookbridge.yaml",
        {
            "event_types": [METER],
            "telemetry": {"topics": ["devices/{device_id}/telemetry"]},
            "subscriptions": [
                {
                    "name": "crm",
                    "url": PUBLIC,
                    "secret": SECRET,
                    "events": ["meter.*", "telemetry.reported"],
                }
            ],
        },
    )
    done = run_cli("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert "valid\n" in done.stdout and not done.stderr, done.stdout + done.stderr
    assert "  event types: meter.read" in done.stdout
    assert "  telemetry: devices/{device_id}/telemetry" in done.stdout


def test_events_schema_with_a_config_file_includes_its_types(tmp_path: Path) -> None:
    # Only event_types is read: the webhook secret's variable need not be set.
    path = tmp_path / "hookbridge.yaml"
    path.write_text(
        yaml.safe_dump({"event_types": [METER]})
        + f"subscriptions:\n  - name: crm\n    url: {PUBLIC}\n"
        "    secret: ${HB_SURELY_UNSET_SECRET}\n"
    )
    every = run_cli("events", "schema", "-c", str(path))
    assert every.returncode == 0, every.stderr
    schema = json.loads(every.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "meter.read" in schema["$defs"]
    assert {"$ref": "#/$defs/meter.read"} in schema["oneOf"]
    one = run_cli("events", "schema", "meter.read", "--config", str(path))
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["properties"]["type"] == {"const": "meter.read"}
    without = run_cli("events", "schema", "meter.read")
    assert without.returncode == 2
    assert "unknown event type 'meter.read'" in without.stderr
    _write(path, {"event_types": [{"name": "bridge.x"}]})
    broken = run_cli("events", "schema", "-c", str(path))
    assert broken.returncode == 2
    assert "  event_types[0].name: 'bridge.x': types under bridge." in broken.stderr


async def test_reload_refuses_invalid_declarations_and_applies_valid_ones(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = admin_config(mosquitto, tmp_path, [{"name": "crm", "url": receiver.url}])
    path = _write(tmp_path / "hookbridge.yaml", config)
    async with running_bridge(config) as bridge, admin_client(config) as admin:
        bridge.config_path = path
        _write(path, {**config, "event_types": [{"name": "x.y", "data_schema": {"type": 3}}]})
        status, body = await admin.post("/api/reload")
        assert status == 400, body
        assert any(
            p.startswith("event_types[0].data_schema: not a valid") for p in body["problems"]
        )

        _write(path, {**config, "event_types": [METER]})
        status, body = await admin.post("/api/reload")
        assert status == 200, body
        assert "event_types" in body["sections"]
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [
                    ("devices/m-1/events", {"type": "meter.read", "id": "a"}),  # no kwh
                    ("devices/m-1/events", {"type": "meter.read", "id": "b", "kwh": 3}),
                ]
            )
            await wait_until(lambda: len(receiver.requests) >= 1, timeout=15)

            async def rejected() -> bool:
                return len(await bridge.store.list_rejected(limit=10)) >= 1

            await wait_until(rejected, timeout=10, message="the message without kwh rejected")
        _write(path, {**config, "telemetry": {"topics": ["devices/{device_id}/telemetry"]}})
        status, body = await admin.post("/api/reload")
        assert status == 409, body
        assert "telemetry.topics" in body["restart_needed"]
    assert [e["data"] for e in receiver.events()] == [{"device_id": "m-1", "kwh": 3}]
