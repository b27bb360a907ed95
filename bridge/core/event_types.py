"""The event types of one configuration: the catalogue and the operator's own.

:class:`EventTypes` answers what the normaliser, the rules and the config
warnings ask about a type name — does it exist, may a device cause it — and
checks an event's ``data`` against its type: the catalogue's pydantic model,
or the JSON Schema a declared type gives (checked with ``jsonschema``; a
declared type without a schema takes any ``data`` that names its device).

Pure: the schemas are self-contained (the configuration refuses a ``$ref``
that points outside one), and no reference is ever fetched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from jsonschema.protocols import Validator
from pydantic import ValidationError
from referencing import Registry

from bridge.core.events import CATALOGUE
from bridge.core.profiles.base import Rejected
from bridge.core.settings.event_types import EventTypeDeclaration, schema_validator_class

__all__ = ["EventTypes", "validated_data"]

_MAX_LISTED_ERRORS = 5
_MAX_ERROR_TEXT = 200


class EventTypes:
    """The catalogue plus the types ``event_types:`` declares."""

    def __init__(self, declarations: Sequence[EventTypeDeclaration] = ()) -> None:
        self.declared: dict[str, EventTypeDeclaration] = {d.name: d for d in declarations}
        self._validators: dict[str, Validator] = {}
        for declaration in declarations:
            schema = declaration.data_schema
            if schema is not None:
                # An empty registry: a reference outside the schema is never fetched.
                validator: Validator = schema_validator_class(schema)(schema, registry=Registry())
                self._validators[declaration.name] = validator

    def names(self) -> list[str]:
        """Every type, the catalogue's first."""
        return [*CATALOGUE, *(n for n in self.declared if n not in CATALOGUE)]

    def device_types(self) -> list[str]:
        """The types a device may cause: all but the bridge's own ``bridge.*``."""
        return [name for name in self.names() if self.is_device_type(name)]

    def is_device_type(self, name: str) -> bool:
        if name.startswith("bridge."):
            return False
        return name in CATALOGUE or name in self.declared

    def validate(self, event_type: str, fields: dict[str, Any]) -> dict[str, Any] | Rejected:
        """``data`` of an event of ``event_type`` (a device type), or why it is invalid."""
        if event_type in CATALOGUE:
            return validated_data(event_type, fields)
        validator = self._validators.get(event_type)
        if validator is None:
            return fields
        return _schema_checked(event_type, fields, validator)


def _schema_checked(
    event_type: str, data: dict[str, Any], validator: Validator
) -> dict[str, Any] | Rejected:
    try:
        errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    except Exception as exc:  # noqa: BLE001 - a schema that fails on this input rejects it
        return Rejected(
            "invalid_fields",
            f"{event_type}: its data_schema could not be applied ({type(exc).__name__})",
        )
    if not errors:
        return data
    return _invalid_fields(
        f"{event_type}: data_schema: ",
        [
            f"{_place(error.absolute_path)}: {error.message[:_MAX_ERROR_TEXT]}"
            for error in errors[:_MAX_LISTED_ERRORS]
        ],
        len(errors),
    )


def _invalid_fields(prefix: str, listed: list[str], count: int) -> Rejected:
    """An ``invalid_fields`` rejection naming the first ``listed`` of ``count`` errors."""
    if count > len(listed):
        listed = [*listed, f"and {count - len(listed)} more"]
    return Rejected("invalid_fields", prefix + "; ".join(listed))


def _place(path: Iterable[object]) -> str:
    text = "data"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def validated_data(event_type: str, fields: dict[str, Any]) -> dict[str, Any] | Rejected:
    """``fields`` checked by the catalogue model of ``event_type``; extra fields kept as sent."""
    model = CATALOGUE[event_type]
    try:
        data = model.model_validate(fields)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        return _invalid_fields(
            f"{event_type}: ",
            [
                f"{'.'.join(str(part) for part in error['loc']) or 'data'}: {error['msg']}"
                for error in errors[:_MAX_LISTED_ERRORS]
            ],
            len(errors),
        )
    dumped = data.model_dump(mode="json", exclude_none=True)
    # exclude_none is for the model's own unset fields; extra fields stay as sent.
    for key, value in (data.model_extra or {}).items():
        if value is None:
            dumped[key] = None
    return dumped
