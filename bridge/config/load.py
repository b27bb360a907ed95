"""Loading the configuration: YAML, ``${ENV}`` interpolation and validation.

``load_config(path)`` is the one entry point. Every problem in a file is
reported at once, each with its place (``subscriptions[2].url: ...``), in a
:class:`~bridge.errors.ConfigError`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bridge.config.models import FEATURES_NOT_BUILT, Settings
from bridge.errors import ConfigError

__all__ = ["load_config", "parse_config"]


_ENV_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, place: str, problems: list[str]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(value, dict):
        return {k: _interpolate(v, _join(place, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{place}[{i}]", problems) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                problems.append(f"{place or '<root>'}: environment variable {name} is not set")
                return ""
            return default
        return found

    return _ENV_PATTERN.sub(substitute, value)


def _join(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key


def _place(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in {"str", "list[constrained-str]", "SecretStr", "list[SecretStr]"}:
            # pydantic names union members in the location; users know only their keys
            continue
        else:
            text = _join(text, str(part))
    return text or "<root>"


def _check_not_built(raw: dict[str, Any], problems: list[str]) -> None:
    subscriptions = raw.get("subscriptions") or []
    for i, sub in enumerate(subscriptions if isinstance(subscriptions, list) else []):
        if not isinstance(sub, dict):
            continue
        for key, value in sub.items():
            why = FEATURES_NOT_BUILT.get(f"subscriptions.{key}={value}") or FEATURES_NOT_BUILT.get(
                f"subscriptions.{key}"
            )
            if why:
                problems.append(f"subscriptions[{i}].{key}: {why}")
    for key, value in raw.items():
        why = FEATURES_NOT_BUILT.get(key)
        if why and value:
            problems.append(f"{key}: {why}")


def parse_config(raw: object, *, interpolate: bool = True) -> Settings:
    """Validate an already-parsed YAML document into :class:`Settings`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a mapping at the top level")
    problems: list[str] = []
    document: dict[str, Any] = raw
    if interpolate:
        document = _interpolate(document, "", problems)
    _check_not_built(document, problems)
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{_place(error['loc'])}: {message}")
    if problems or settings is None:
        count = len(problems)
        raise ConfigError(f"configuration has {count} problem{'s' if count != 1 else ''}", problems)
    return settings


def load_config(path: str | os.PathLike[str]) -> Settings:
    """Read, interpolate and validate a YAML configuration file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot be read ({type(exc).__name__})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{file}: not valid YAML{where}: {problem}") from None
    return parse_config(raw)
