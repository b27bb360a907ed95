"""JSON Schemas a user reads: the configuration file and the event envelopes.

``config_schema()`` is the schema of the YAML configuration (what
``hookbridge config schema`` prints and ``config/hookbridge.schema.json``
holds). ``event_schema(type)`` is the schema of one delivery body: the
envelope with that type's ``data`` model; ``events_schema()`` is every type in
one document, keyed by type under ``$defs`` and combined with ``oneOf`` so
that any delivery body validates against it (``config/events.schema.json``).
Both take a configuration's declared types (``event_types``) as well: a
declared type's ``data`` names its device and satisfies its ``data_schema``.

The committed files are generated (``make schemas``); a test keeps them equal
to what this module produces.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bridge.core.events import CATALOGUE, SCHEMA_VERSION
from bridge.core.settings.event_types import EventTypeDeclaration
from bridge.core.settings.models import Settings

__all__ = [
    "CONFIG_SCHEMA_ID",
    "DECLARED_TYPES_ID",
    "DRAFT",
    "EVENTS_SCHEMA_ID",
    "config_schema",
    "dumps",
    "event_schema",
    "events_schema",
]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
EVENTS_SCHEMA_ID = "https://hookbridge.dev/schemas/events.schema.json"
CONFIG_SCHEMA_ID = "https://hookbridge.dev/schemas/hookbridge.schema.json"
DECLARED_TYPES_ID = "https://hookbridge.dev/schemas/event-types"


def dumps(schema: dict[str, Any]) -> str:
    """The canonical text of a schema file: stable key order, two-space indent, final newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the configuration file."""
    schema = Settings.model_json_schema(mode="validation")
    return {
        "$schema": DRAFT,
        "$id": CONFIG_SCHEMA_ID,
        **schema,
        "title": "HookBridge configuration",
    }


def _data_schema(event_type: str, defs: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` model of a type; nested definitions are hoisted into ``defs``."""
    model = CATALOGUE[event_type]
    schema = model.model_json_schema(mode="serialization", ref_template="#/$defs/{model}")
    defs.update(schema.pop("$defs", {}))
    schema["title"] = f"{event_type} data"
    return schema


def _declared_data_schema(declaration: EventTypeDeclaration) -> dict[str, Any]:
    """A declared type's ``data``: it names its device, and satisfies the declared schema.

    The declared schema is embedded as a resource of its own (``$id``), so its
    local ``#/...`` references keep pointing inside it.
    """
    names_device: dict[str, Any] = {
        "type": "object",
        "required": ["device_id"],
        "properties": {"device_id": {"type": "string", "minLength": 1, "maxLength": 256}},
    }
    schema: dict[str, Any] = {"title": f"{declaration.name} data"}
    if declaration.description:
        schema["description"] = declaration.description
    if declaration.data_schema is None:
        return {**schema, **names_device}
    declared = {
        "$id": f"{DECLARED_TYPES_ID}/{declaration.name}/data",
        **declaration.data_schema,
    }
    return {**schema, "allOf": [names_device, declared]}


def _envelope(
    event_type: str, data: dict[str, Any], description: str | None = None
) -> dict[str, Any]:
    return {
        "type": "object",
        "title": f"{event_type} event",
        "description": description
        or f"The body of a `{event_type}` delivery (Standard Webhooks envelope).",
        "required": ["id", "type", "timestamp", "source", "schema_version", "data"],
        "additionalProperties": False,
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^evt_[a-z0-9]+$",
                "description": "Stable event id: the same on every retry and replay.",
            },
            "type": {"const": event_type},
            "timestamp": {
                "type": "string",
                "format": "date-time",
                "description": "When it happened (RFC 3339, UTC, milliseconds).",
            },
            "source": {"type": "string", "description": "Where the event came from."},
            "schema_version": {"const": SCHEMA_VERSION},
            "data": data,
        },
    }


def _envelopes(
    declared: Sequence[EventTypeDeclaration], defs: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    envelopes = {t: _envelope(t, _data_schema(t, defs)) for t in CATALOGUE}
    for declaration in declared:
        description = (
            f"The body of a `{declaration.name}` delivery: a type this configuration declares."
        )
        data = _declared_data_schema(declaration)
        envelopes[declaration.name] = _envelope(declaration.name, data, description)
    return envelopes


def event_schema(event_type: str, declared: Sequence[EventTypeDeclaration] = ()) -> dict[str, Any]:
    """The schema of one type's delivery body; ``KeyError`` for an unknown type.

    ``declared`` are the configuration's own types (``event_types``).
    """
    defs: dict[str, Any] = {}
    if event_type in CATALOGUE:
        envelope = _envelope(event_type, _data_schema(event_type, defs))
    else:
        envelope = _envelopes([d for d in declared if d.name == event_type], defs)[event_type]
    schema: dict[str, Any] = {"$schema": DRAFT, **envelope}
    if defs:
        schema["$defs"] = defs
    return schema


def events_schema(declared: Sequence[EventTypeDeclaration] = ()) -> dict[str, Any]:
    """Every type in one document: ``$defs`` keyed by type, ``oneOf`` over them.

    The catalogue's types, then those of ``declared`` (a configuration's ``event_types``).
    """
    defs: dict[str, Any] = {}
    envelopes = _envelopes(declared, defs)
    return {
        "$schema": DRAFT,
        "$id": EVENTS_SCHEMA_ID,
        "title": "HookBridge events",
        "description": (
            f"Delivery bodies of every event type (schema_version {SCHEMA_VERSION}). "
            "Each type's schema is under $defs, keyed by the type."
        ),
        "oneOf": [{"$ref": f"#/$defs/{t}"} for t in envelopes],
        "$defs": {**defs, **envelopes},
    }
