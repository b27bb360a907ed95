"""The JSON Schemas: generated files never drift, examples validate, events match their schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from bridge.config import Settings, parse_config
from bridge.core.events import CATALOGUE, Event
from bridge.core.normalise import Message, Normalised, Normaliser
from bridge.core.schema import config_schema, dumps, event_schema, events_schema
from tests.test_pipeline import SAMPLES

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
EXAMPLE = CONFIG_DIR / "hookbridge.example.yaml"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


def test_committed_schemas_are_the_generated_ones() -> None:
    for name, schema in (
        ("hookbridge.schema.json", config_schema()),
        ("events.schema.json", events_schema()),
    ):
        committed = (CONFIG_DIR / name).read_text(encoding="utf-8")
        assert committed == dumps(schema), f"config/{name} is stale: run `make schemas`"


def test_schemas_are_valid_json_schema() -> None:
    for schema in (config_schema(), events_schema(), *(event_schema(t) for t in CATALOGUE)):
        jsonschema.Draft202012Validator.check_schema(schema)


def test_cli_prints_the_schemas() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "events", "schema", "session.started"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == event_schema("session.started")
    every = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "events", "schema"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert every.stdout == dumps(events_schema())
    unknown = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "events", "schema", "session.exploded"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert unknown.returncode == 2
    assert "unknown event type" in unknown.stderr


def _config_files() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.yaml")) + sorted(CONFIG_DIR.glob("*.yml"))


@pytest.mark.parametrize("path", _config_files(), ids=lambda p: p.name)
def test_every_config_file_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    jsonschema.validate(raw, config_schema())
    for name in set(_ENV.findall(text)):
        monkeypatch.setenv(name, f"whsec_{'Q' * 32}")
    settings = parse_config(raw)
    assert isinstance(settings, Settings)


def test_schema_refuses_a_misspelt_key() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"retention": {"deliverd": "7d"}}, config_schema())


def _keys_of_schema(schema: dict[str, Any], node: dict[str, Any], prefix: str) -> set[str]:
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    keys: set[str] = set()
    for alternative in node.get("anyOf", []) + node.get("oneOf", []):
        keys |= _keys_of_schema(schema, alternative, prefix)
    if node.get("type") == "array" and "items" in node:
        keys |= _keys_of_schema(schema, node["items"], prefix)
    for name, sub in node.get("properties", {}).items():
        keys.add(f"{prefix}{name}")
        keys |= _keys_of_schema(schema, sub, f"{prefix}{name}.")
    return keys


def _keys_of_document(value: Any, prefix: str) -> set[str]:
    keys: set[str] = set()
    if isinstance(value, list):
        for item in value:
            keys |= _keys_of_document(item, prefix)
    elif isinstance(value, dict):
        for name, sub in value.items():
            keys.add(f"{prefix}{name}")
            keys |= _keys_of_document(sub, f"{prefix}{name}.")
    return keys


def test_example_shows_every_key() -> None:
    schema = config_schema()
    wanted = _keys_of_schema(schema, schema, "")
    # Free-form maps: their keys are the user's (a rule's data fields, headers, map entries).
    shown = _keys_of_document(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")), "")
    missing = sorted(k for k in wanted - shown)
    assert not missing, f"config/hookbridge.example.yaml lacks: {missing}"


def _sample_event(event_type: str) -> Event:
    """A real normalised event for device types; a model-checked one for the bridge's own."""
    now = datetime(2026, 11, 22, 4, 36, 14, 553000, tzinfo=UTC)
    if event_type.startswith("bridge."):
        fields = {
            "subscription": "crm",
            "reason": "sample",
            "key": "k-1",
            "file": "dead.jsonl",
            "count": 3,
            "id": "inb_0123",
            "topic": "devices/dev-42/commands",
            "log_bytes": 600_000_000,
            "limit_bytes": 536_870_912,
            "dropped": 190,
            "total": 190,
            "broker": "mqtt://broker-1:1883",
            "counter": "$SYS/broker/publish/messages/dropped",
            "scope": "broker-wide: every client's dropped messages, not only this bridge's",
        }
        data = CATALOGUE[event_type].model_validate(fields)
        return Event(
            id="evt_sample0000000001",
            type=event_type,
            timestamp=now,
            source="hookbridge://hookbridge-1",
            data=data.model_dump(mode="json", exclude_none=True),
        )
    normaliser = Normaliser(parse_config({}), source="mqtt://127.0.0.1:1883")
    payload = {"type": event_type, "id": "m-1", "seq": 3, **SAMPLES.get(event_type, {})}
    message = Message(topic="devices/dev-42/events", payload=orjson.dumps(payload), received_at=now)
    result = normaliser.normalise(message)
    assert isinstance(result, Normalised), result
    return result.event


@pytest.mark.parametrize("event_type", list(CATALOGUE))
def test_sample_events_validate(event_type: str) -> None:
    body = json.loads(_sample_event(event_type).body())
    jsonschema.validate(body, events_schema())
    jsonschema.validate(body, event_schema(event_type))


def test_events_schema_refuses_a_wrong_field() -> None:
    body = json.loads(_sample_event("file_transfer.completed").body())
    body["data"]["size_bytes"] = "big"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, event_schema("file_transfer.completed"))
    body = json.loads(_sample_event("session.started").body())
    del body["id"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, events_schema())
