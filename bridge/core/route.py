"""Routing: which subscriptions want an event.

A subscription wants an event when it is enabled, one of its ``events``
globs matches the event type (fnmatch style, case-sensitive: ``device.*``,
``*``, an exact type) and its optional ``filter`` — JMESPath over the
envelope — is truthy. A subscription that belongs to an account (``owners``)
sees only that account's events; the others (the operator's) see every event
their globs and filter match, and are the only ones an event without an
account reaches. Pure; called once per event on the hot path, so globs
and filters are compiled once and the glob part is cached per event type.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jmespath
import jmespath.parser

from bridge.core.events import Event
from bridge.core.settings.models import Subscription

__all__ = ["Router", "jmespath_truthy"]

# Event types come from a small catalogue; the bound only guards against a
# flood of invented types growing the cache without end.
_CACHE_LIMIT = 1024

_Candidate = tuple[Subscription, jmespath.parser.ParsedResult | None]


def jmespath_truthy(value: object) -> bool:
    """JMESPath's own truth: false, null, "", [] and {} are false; every number is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


class Router:
    """Matches events against a fixed set of subscriptions."""

    def __init__(
        self, subscriptions: Sequence[Subscription], owners: Mapping[str, str] | None = None
    ) -> None:
        # Subscription name -> the account it belongs to (absent: the operator's).
        self.owners: dict[str, str] = {
            name: owner for name, owner in (owners or {}).items() if owner
        }
        self._routes: list[tuple[re.Pattern[str], _Candidate]] = []
        for subscription in subscriptions:
            if not subscription.enabled:
                continue
            globs = "|".join(f"(?:{fnmatch.translate(glob)})" for glob in subscription.events)
            flt = jmespath.compile(subscription.filter) if subscription.filter else None
            self._routes.append((re.compile(globs), (subscription, flt)))
        self._by_type: dict[str, list[_Candidate]] = {}
        # Their deliveries go out one at a time per device (see bridge.store.heads).
        self.ordered = frozenset(
            subscription.name for _, (subscription, _) in self._routes if subscription.ordered
        )

    def match(self, event: Event) -> list[Subscription]:
        """The subscriptions that want ``event``, in configuration order. Never raises."""
        candidates = self._candidates(event.type)
        if not candidates:
            return []
        matched: list[Subscription] = []
        envelope: dict[str, Any] | None = None
        owners = self.owners
        for subscription, flt in candidates:
            owner = owners.get(subscription.name) if owners else None
            if owner is not None and owner != event.account:
                continue  # an account's subscription sees only that account's events
            if flt is None:
                matched.append(subscription)
                continue
            if envelope is None:
                envelope = event.to_dict()
            if _passes(flt, envelope):
                matched.append(subscription)
        return matched

    def _candidates(self, event_type: str) -> list[_Candidate]:
        """The subscriptions whose globs match ``event_type``, computed once per type."""
        cached = self._by_type.get(event_type)
        if cached is None:
            cached = [candidate for globs, candidate in self._routes if globs.match(event_type)]
            if len(self._by_type) >= _CACHE_LIMIT:
                self._by_type.clear()
            self._by_type[event_type] = cached
        return cached


def _passes(flt: jmespath.parser.ParsedResult, envelope: dict[str, Any]) -> bool:
    try:
        return jmespath_truthy(flt.search(envelope))
    except Exception:  # noqa: BLE001 - a filter that fails on this event simply does not match
        return False
