"""The operator's own event types (``event_types:``) and the telemetry topics (``telemetry:``).

A declared type has a name shaped like the catalogue's (``meter.read``:
lowercase, dotted), never under ``bridge.`` and never a catalogue name, an
optional description, and an optional JSON Schema that every event's
``data`` of that type must satisfy. The schema is checked here, once, with
the ``jsonschema`` library; it must be self-contained (its ``$ref``s point
inside it): nothing is ever fetched.

Pure: no files, no network, no environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from jsonschema import SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "EVENT_TYPE_NAME",
    "EventTypeDeclaration",
    "TelemetrySettings",
    "check_data_schema",
    "check_event_type_name",
    "schema_validator_class",
]

EVENT_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
"""``noun.verb``: lowercase letters, digits and ``_``, in two or more dotted parts."""

_MAX_NAME = 64
_REFERENCES = ("$ref", "$dynamicRef")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def check_event_type_name(value: str) -> str:
    """A name an operator may declare; ``ValueError`` says why not."""
    from bridge.core.events import CATALOGUE

    if value.startswith("bridge."):
        raise ValueError(f"'{value}': types under bridge. are the bridge's own; choose another")
    if value in CATALOGUE:
        raise ValueError(
            f"'{value}' is already in the event catalogue; a declaration cannot redefine it"
        )
    if len(value) > _MAX_NAME or not EVENT_TYPE_NAME.match(value):
        raise ValueError(
            f"'{value[:_MAX_NAME]}' is not a type name: write <noun>.<verb> in lowercase, "
            f"like the catalogue's (e.g. meter.read): letters, digits and _ in dotted parts, "
            f"at most {_MAX_NAME} characters"
        )
    return value


def _dialects() -> dict[str, Any]:
    from jsonschema import (
        Draft4Validator,
        Draft6Validator,
        Draft7Validator,
        Draft201909Validator,
        Draft202012Validator,
    )

    classes = (
        Draft4Validator,
        Draft6Validator,
        Draft7Validator,
        Draft201909Validator,
        Draft202012Validator,
    )
    return {
        str(cls.META_SCHEMA.get("$id", cls.META_SCHEMA.get("id", ""))).rstrip("#"): cls
        for cls in classes
    }


def schema_validator_class(schema: dict[str, Any]) -> Any:
    """The ``jsonschema`` validator class of the dialect ``schema`` names (2020-12 by default).

    ``KeyError`` for a ``$schema`` that names no dialect the library knows.
    """
    from jsonschema import Draft202012Validator

    dialect = schema.get("$schema")
    if dialect is None:
        return Draft202012Validator
    return _dialects()[str(dialect).rstrip("#")]


def _references(node: object, path: str) -> Iterator[tuple[str, object]]:
    """Every ``$ref`` (and ``$dynamicRef``) in a schema, with where it is."""
    stack: list[tuple[object, str]] = [(node, path)]
    while stack:  # each node is pushed once: bounded by the size of the schema
        value, where = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                if key in _REFERENCES:
                    yield f"{where}.{key}", child
                stack.append((child, f"{where}.{key}"))
        elif isinstance(value, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(value))


def check_data_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A valid, self-contained JSON Schema; ``ValueError`` says where it is not."""
    if str(schema.get("$schema", "")).rstrip("#") not in {"", *_dialects()}:
        raise ValueError(
            f"$schema '{schema['$schema']}' is not a JSON Schema dialect this bridge knows "
            "(omit it for draft 2020-12)"
        )
    for where, reference in _references(schema, ""):
        if not isinstance(reference, str) or not reference.startswith("#"):
            raise ValueError(
                f"{where.lstrip('.')}: the schema must be self-contained: a $ref points inside "
                "it (#/$defs/...), nothing is fetched"
            )
    try:
        schema_validator_class(schema).check_schema(schema)
    except SchemaError as error:
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
        )
        at = f" (at {where.lstrip('.')})" if where else ""
        raise ValueError(f"not a valid JSON Schema{at}: {error.message[:200]}") from None
    return schema


class EventTypeDeclaration(_Model):
    """One entry of ``event_types:``."""

    name: str = Field(description="<noun>.<verb>, lowercase, e.g. meter.read")
    description: str | None = None
    data_schema: dict[str, Any] | None = Field(
        default=None,
        description="A JSON Schema (draft 2020-12 unless $schema says otherwise) for data",
    )

    _name = field_validator("name")(check_event_type_name)

    @field_validator("data_schema")
    @classmethod
    def _check_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_data_schema(value)


class TelemetrySettings(_Model):
    """Topics whose messages are ``telemetry.reported`` events, whatever their payload."""

    # Topic patterns as in rules: literal levels and {name} levels; {device_id} is required.
    topics: list[str] = Field(default_factory=list)

    @field_validator("topics")
    @classmethod
    def _check_topics(cls, value: list[str]) -> list[str]:
        from bridge.core.topics import TopicPattern

        problems: list[str] = []
        for index, topic in enumerate(value):
            if any(c in topic for c in "+#"):
                problems.append(
                    f"[{index}]: write the device's level as {{device_id}} and other levels "
                    "as {name}, not MQTT wildcards (e.g. devices/{device_id}/telemetry)"
                )
                continue
            try:
                pattern = TopicPattern(topic)
            except ValueError as exc:
                problems.append(f"[{index}]: {exc}")
                continue
            if "device_id" not in pattern.names:
                problems.append(
                    f"[{index}]: no {{device_id}} level; the device id comes from the topic "
                    "(e.g. devices/{device_id}/telemetry)"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return value
