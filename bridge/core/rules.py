"""User rules from the ``rules:`` section: topic patterns with named levels and JMESPath.

A rule such as::

    - topic: site/{site}/rdp/{device_id}/{action}
      type: {from: topic.action, map: {connect: session.started, disconnect: session.ended}}
      data: {device_id: topic.device_id, user: payload.user}

matches a topic level by level (``{name}`` takes one whole level) and
evaluates every expression over ``{"topic": {named levels}, "payload": …}``,
where the payload is the parsed JSON, or its text when it is not JSON.
Everything that can be checked without a message — the pattern, every
JMESPath expression, every event type a rule can produce (a catalogue type
or one the configuration declares under ``event_types``) — is checked once,
at construction, and reported as a :class:`~bridge.errors.ConfigError`.
A :class:`UserRule` is a :class:`~bridge.core.profiles.base.Profile`, so the
normaliser treats rules and built-in profiles alike.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.parser

from bridge.core.event_types import EventTypes
from bridge.core.events import CATALOGUE
from bridge.core.profiles.base import Draft, Payload, Rejected, quote
from bridge.core.settings.checks import jmespath_problem
from bridge.core.settings.models import Rule, TypeFrom
from bridge.core.topics import TopicPattern
from bridge.errors import ConfigError

__all__ = ["UserRule", "compile_rules", "device_event_type"]


def device_event_type(name: str) -> bool:
    """True for a catalogue type a device may cause; ``bridge.*`` events are the bridge's own."""
    return name in CATALOGUE and not name.startswith("bridge.")


class UserRule:
    """One entry of ``rules:``, compiled."""

    def __init__(self, rule: Rule, index: int, types: EventTypes | None = None) -> None:
        place = f"rules[{index}]"
        types = types or EventTypes()
        self._place = place
        # The topic level naming the event's account (the normaliser reads it).
        self.account_level = rule.account_level
        problems: list[str] = []
        try:
            self.pattern = TopicPattern(rule.topic)
        except ValueError as exc:
            raise ConfigError(f"{place}.topic: {exc}") from None

        # A literal type, or the expression that finds it in the message.
        self._type: str | jmespath.parser.ParsedResult
        self._type_map: dict[str, str] | None = None
        if isinstance(rule.type, TypeFrom):
            self._type = _compile(rule.type.from_, f"{place}.type.from", problems)
            self._type_map = rule.type.map
            for raw, canonical in (rule.type.map or {}).items():
                if not types.is_device_type(canonical):
                    problems.append(f"{place}.type.map.{raw}: {_not_a_type(canonical, types)}")
        else:
            self._type = rule.type
            if not types.is_device_type(rule.type):
                problems.append(f"{place}.type: {_not_a_type(rule.type, types)}")

        self._data = {
            name: _compile(text, f"{place}.data.{name}", problems)
            for name, text in rule.data.items()
        }
        self._id = _compile(rule.id, f"{place}.id", problems) if rule.id else None
        self._occurred_at = (
            _compile(rule.occurred_at, f"{place}.occurred_at", problems)
            if rule.occurred_at
            else None
        )
        if "device_id" not in rule.data and "device_id" not in self.pattern.names:
            problems.append(
                f"{place}: no device id; add data.device_id or a {{device_id}} topic level"
            )
        if problems:
            raise ConfigError(problems[0], problems)

    @property
    def name(self) -> str:
        return f"{self._place} ({self.pattern.template})"

    def topic_filters(self) -> list[str]:
        return [self.pattern.filter]

    def match(self, levels: Sequence[str]) -> Mapping[str, str] | None:
        return self.pattern.match(levels)

    def interpret(self, named: Mapping[str, str], payload: Payload) -> Draft | Rejected:
        context = {"topic": dict(named), "payload": payload.document}
        try:
            event_type = self._event_type(context)
            if isinstance(event_type, Rejected):
                return event_type
            fields: dict[str, Any] = {}
            for field_name, expression in self._data.items():
                value = expression.search(context)
                if value is not None:  # an absent field is simply not sent
                    fields[field_name] = value
            message_id = self._id.search(context) if self._id else None
            occurred_at = self._occurred_at.search(context) if self._occurred_at else None
        except jmespath.exceptions.JMESPathError as exc:
            return Rejected("invalid_fields", f"{self.name}: an expression failed: {exc}")
        if "device_id" in self._data:
            device_id = fields.pop("device_id", None)
        else:
            device_id = named["device_id"]
        if device_id is None:
            return Rejected(
                "missing_device_id", f"{self.name}: data.device_id found nothing in the message"
            )
        return Draft(event_type, device_id, fields, message_id, occurred_at)

    def _event_type(self, context: dict[str, Any]) -> str | Rejected:
        if isinstance(self._type, str):
            return self._type
        raw = self._type.search(context)
        if self._type_map is None:
            if isinstance(raw, str):
                return raw  # the normaliser checks it against the catalogue
            return Rejected("unknown_type", f"{self.name}: type {quote(raw)} is not a string")
        key = str(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else None
        mapped = self._type_map.get(key) if key is not None else None
        if mapped is None:
            known = ", ".join(sorted(self._type_map))
            return Rejected(
                "unknown_type", f"{self.name}: {quote(raw)} maps to no event type (known: {known})"
            )
        return mapped


def compile_rules(rules: Sequence[Rule], types: EventTypes | None = None) -> list[UserRule]:
    """Compile every rule, reporting the problems of all of them at once.

    ``types`` are the types a rule may produce: the catalogue's and those the
    configuration declares (the catalogue's alone when not given).
    """
    compiled: list[UserRule] = []
    problems: list[str] = []
    for index, rule in enumerate(rules):
        try:
            compiled.append(UserRule(rule, index, types))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        count = len(problems)
        raise ConfigError(f"rules have {count} problem{'s' if count != 1 else ''}", problems)
    return compiled


def _compile(text: str, place: str, problems: list[str]) -> jmespath.parser.ParsedResult:
    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        problems.append(f"{place}: {jmespath_problem(exc)}")
        # A placeholder that keeps construction going, so every problem is reported at once.
        return jmespath.compile("`null`")


def _not_a_type(name: str, types: EventTypes) -> str:
    if name.startswith("bridge."):
        return f"'{name}' is made by the bridge itself, a rule cannot produce it"
    close = difflib.get_close_matches(name, types.device_types(), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"'{name}' is not in the event catalogue{hint}"
