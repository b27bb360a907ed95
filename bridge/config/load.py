"""Loading the configuration: YAML, ``${ENV}`` interpolation and validation.

``load_config(path)`` is the one entry point. Every problem in a file is
reported at once, each with its place (``subscriptions[2].url: ...``), in a
:class:`~bridge.errors.ConfigError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bridge.config.problems import did_you_mean, join_place, validation_problems
from bridge.core.settings.checks import duplicate_names
from bridge.core.settings.event_types import EventTypeDeclaration
from bridge.core.settings.models import FEATURES_NOT_BUILT, ApiSettings, Rule, Settings
from bridge.errors import ConfigError

__all__ = [
    "load_api_settings",
    "load_config",
    "load_event_types",
    "parse_config",
    "read_document",
]


_ENV_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, place: str, missing: dict[str, str]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``.

    ``missing`` collects the place of each unset variable (place → its name).
    """
    if isinstance(value, dict):
        return {k: _interpolate(v, join_place(place, str(k)), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{place}[{i}]", missing) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is None or (found == "" and default is not None):
            if default is None:
                missing.setdefault(place or "<root>", name)
                return ""
            return default
        return found

    return _ENV_PATTERN.sub(substitute, value)


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


def _items(document: dict[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    entries = document.get(section)
    if not isinstance(entries, list):
        return []
    return [(i, entry) for i, entry in enumerate(entries) if isinstance(entry, dict)]


def _check_names(document: dict[str, Any], problems: list[str]) -> None:
    """Names (and inbound paths) are unique; a repeat is reported where it is."""
    for section in ("subscriptions", "inbound", "event_types"):
        names = [(index, entry.get("name")) for index, entry in _items(document, section)]
        problems.extend(duplicate_names(section, names))
    paths = [(index, entry.get("path")) for index, entry in _items(document, "inbound")]
    problems.extend(duplicate_names("inbound", paths, key="path"))


def _declared_types(document: dict[str, Any]) -> list[EventTypeDeclaration]:
    """The valid entries of ``event_types`` (the invalid ones are reported with their place)."""
    declared: list[EventTypeDeclaration] = []
    for _index, entry in _items(document, "event_types"):
        try:
            declared.append(EventTypeDeclaration.model_validate(entry))
        except ValidationError:
            continue
    return declared


def _check_rules(document: dict[str, Any], problems: list[str]) -> None:
    """Compile every rule as ``run`` does: event types known, JMESPath parsed, a device id."""
    from bridge.core.event_types import EventTypes
    from bridge.core.rules import UserRule

    types = EventTypes(_declared_types(document))
    for index, entry in _items(document, "rules"):
        try:
            rule = Rule.model_validate(entry)
        except ValidationError:
            continue  # reported with its place by the whole document's validation
        try:
            UserRule(rule, index, types)
        except ConfigError as exc:
            problems.extend(exc.problems)


def _check_plugins(document: dict[str, Any], problems: list[str]) -> None:
    """Formats and filters that installed plugins provide (which needs the plugins loaded)."""
    from bridge.core.formats import FORMATS
    from bridge.plugin import filter_for, load_plugins

    load_plugins()
    for index, entry in _items(document, "subscriptions"):
        fmt = entry.get("format")
        if isinstance(fmt, str) and fmt not in FORMATS:
            known = ", ".join(sorted(FORMATS))
            hint = did_you_mean(fmt, FORMATS)
            problems.append(f"subscriptions[{index}].format: unknown format{hint}; known: {known}")
        name = entry.get("filter_plugin")
        if isinstance(name, str) and filter_for(name) is None:
            problems.append(
                f"subscriptions[{index}].filter_plugin: no installed plugin provides this filter"
            )


_FILE_KEYS = {
    "mqtt.tls": ("ca_file", "cert_file", "key_file"),
    "subscriptions": ("ca_file", "client_cert", "client_key"),
}


def _check_files(document: dict[str, Any], problems: list[str]) -> None:
    """Certificate and key files exist (relative paths count from the working directory)."""
    places: list[tuple[str, object]] = []
    mqtt = document.get("mqtt")
    tls = mqtt.get("tls") if isinstance(mqtt, dict) else None
    if isinstance(tls, dict):
        places += [(f"mqtt.tls.{key}", tls.get(key)) for key in _FILE_KEYS["mqtt.tls"]]
    for index, entry in _items(document, "subscriptions"):
        places += [
            (f"subscriptions[{index}].{key}", entry.get(key)) for key in _FILE_KEYS["subscriptions"]
        ]
    for place, value in places:
        if isinstance(value, str) and value and not Path(value).is_file():
            problems.append(
                f"{place}: no such file: {value} (a relative path counts from the working "
                "directory the bridge runs in)"
            )


def _follows_from(problem: str, places: Iterable[str]) -> bool:
    """Whether ``problem`` is at or under one of ``places`` (a follow-on of an unset variable)."""
    where = problem.split(": ", 1)[0]
    return any(where == p or where.startswith((p + ".", p + "[")) for p in places)


def parse_config(raw: object, *, interpolate: bool = True, check_files: bool = False) -> Settings:
    """Validate an already-parsed YAML document into :class:`Settings`.

    Everything ``run`` checks is checked here, so ``check-config``, ``run``
    and a reload refuse the same files with the same messages: the models,
    then what the running parts compile (rules, formats and filters of
    plugins). An unset ``${VAR}`` is one problem at its place, without the
    follow-on problems of the empty text put in its stead. With
    ``check_files`` (as :func:`load_config` does), certificate and key files
    must exist.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a mapping at the top level")
    missing: dict[str, str] = {}
    document: dict[str, Any] = raw
    if interpolate:
        document = _interpolate(document, "", missing)
    problems = [
        f"{place}: environment variable {name} is not set" for place, name in missing.items()
    ]
    found: list[str] = []
    _check_not_built(document, found)
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(document)
    except ValidationError as exc:
        found.extend(validation_problems(Settings, exc))
    _check_names(document, found)
    _check_rules(document, found)
    _check_plugins(document, found)
    if check_files:
        _check_files(document, found)
    for problem in found:
        if problem not in problems and not _follows_from(problem, missing):
            problems.append(problem)
    if problems or settings is None:
        count = len(problems)
        raise ConfigError(f"configuration has {count} problem{'s' if count != 1 else ''}", problems)
    return settings


def _read_yaml(path: str | os.PathLike[str]) -> object:
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
    if raw is None:
        raise ConfigError(
            f"{file}: the file is empty (or only comments); a configuration needs at least "
            "a subscription, see config/hookbridge.example.yaml and docs/configuration.md"
        )
    return raw


def read_document(path: str | os.PathLike[str]) -> object:
    """A configuration file's document, interpolated, not validated (an unset variable
    is left empty): what check-config works its warnings out from when there are
    errors. None when the file cannot be read as YAML."""
    try:
        raw = _read_yaml(path)
    except ConfigError:
        return None
    return _interpolate(raw, "", {})


def load_config(path: str | os.PathLike[str]) -> Settings:
    """Read, interpolate and validate a YAML configuration file."""
    return parse_config(_read_yaml(path), check_files=True)


def _read_section(path: str | os.PathLike[str], key: str) -> Any:
    """One top-level section of a configuration file, interpolated (None when absent);
    only the variables it names must be set."""
    raw = _read_yaml(path)
    section = raw.get(key) if isinstance(raw, dict) else None
    if section is None:
        return None
    missing: dict[str, str] = {}
    section = _interpolate(section, key, missing)
    if missing:
        raise _section_error(
            key,
            [f"{place}: environment variable {name} is not set" for place, name in missing.items()],
        )
    return section


def _section_error(key: str, problems: list[str]) -> ConfigError:
    count = len(problems)
    return ConfigError(
        f"the {key} section has {count} problem{'s' if count != 1 else ''}", problems
    )


def load_api_settings(path: str | os.PathLike[str]) -> ApiSettings:
    """Only the ``api`` section of a configuration file, interpolating only it.

    What an operator command needs to reach a running bridge; the rest of
    the file (webhook secrets and their ``${VAR}``s included) is not read.
    """
    section = _read_section(path, "api")
    if section is None:
        return ApiSettings()
    try:
        return ApiSettings.model_validate(section)
    except ValidationError as exc:
        problems = [
            f"api.{p}" if not p.startswith("<root>") else "api" + p[6:]
            for p in validation_problems(ApiSettings, exc)
        ]
        raise _section_error("api", problems) from None


def load_event_types(path: str | os.PathLike[str]) -> list[EventTypeDeclaration]:
    """Only the ``event_types`` section of a configuration file, interpolating only it.

    What ``hookbridge events schema -c FILE`` needs: the rest of the file (and
    the variables it needs) is not read.
    """
    section = _read_section(path, "event_types")
    if section is None:
        return []
    try:
        return Settings.model_validate({"event_types": section}).event_types
    except ValidationError as exc:
        raise _section_error("event_types", validation_problems(Settings, exc)) from None
