"""Validation errors as users read them: ``place: what is wrong``, with a "did you mean".

Pure: turns pydantic's error locations into the places users write
(``subscriptions[0].auth.token``, not ``subscriptions.0.auth.bearer.token``),
suggests the closest known key for a typo, and splits a validator's
multi-line message (each line may carry its own sub-place, see
:mod:`bridge.core.settings.checks`) into one problem per line.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["did_you_mean", "join_place", "validation_problems"]

# pydantic names the member of a plain union in the location; users know only their keys.
_UNION_MEMBERS = {"str", "list[constrained-str]", "SecretStr", "list[SecretStr]"}
_SUB_PLACE = re.compile(r"^((?:\.[^:\s]+|\.'[^']*'|\[\d+\])+): (.+)$", re.DOTALL)


def join_place(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or an empty string."""
    close = difflib.get_close_matches(word, sorted(set(known)), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def validation_problems(root: type[BaseModel], error: ValidationError) -> list[str]:
    """Every error of ``error`` as ``place: message``, in order."""
    problems: list[str] = []
    errors = error.errors(include_url=False, include_input=False)
    for item in errors:
        if _union_noise(item["loc"], errors):
            continue
        place, models = _locate(root, item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden" and item["loc"]:
            key = str(item["loc"][-1])
            known = [name for model in models for name in _keys(model)]
            message += did_you_mean(key, known)
        for line in message.split("\n"):
            sub = _SUB_PLACE.match(line)
            if sub is not None:
                problems.append(f"{(place + sub.group(1)).lstrip('.') or '<root>'}: {sub.group(2)}")
            else:
                problems.append(f"{place or '<root>'}: {line}")
    return problems


def _union_noise(loc: tuple[int | str, ...], errors: list[Any]) -> bool:
    """A plain member's "should be a string" when the value was meant as another member."""
    if not loc or loc[-1] not in _UNION_MEMBERS:
        return False
    parent = loc[:-1]
    return any(
        len(other["loc"]) > len(loc) and other["loc"][: len(parent)] == parent for other in errors
    )


def _locate(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, list[type[BaseModel]]]:
    """The user's place of ``loc``, and the models that could hold its last key."""
    text = ""
    models: list[type[BaseModel]] = [root]  # the models the next key belongs to
    for depth, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        if part in _UNION_MEMBERS:
            continue
        named = [m for m in models if part in (m.__name__, *_tags(m))]
        if named and not any(part in _keys(m) for m in models):
            models = named  # a member of a union, named by class or by its type tag
            continue
        text = join_place(text, part)
        if depth < len(loc) - 1:
            models = [found for m in models for found in _models_in(_annotation(m, part))]
    return text, models


def _keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _annotation(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field.annotation
    return None


def _tags(model: type[BaseModel]) -> tuple[str, ...]:
    field = model.model_fields.get("type")
    if field is None or typing.get_origin(field.annotation) is not typing.Literal:
        return ()
    return tuple(str(value) for value in typing.get_args(field.annotation))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation may hold: through lists, dicts, unions and ``Annotated``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return []
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        args = args[:1]
    return [model for arg in args for model in _models_in(arg)]
