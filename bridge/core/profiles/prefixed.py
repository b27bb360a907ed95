"""A profile's topics with the account before them: ``accounts.topic_prefix``.

``AccountPrefixed(NativeProfile(), "tenants/{account}/")`` reads
``tenants/acme/devices/dev-1/events`` as the native profile reads
``devices/dev-1/events``, and names ``acme`` as the event's account. The
account comes from the topic alone (the broker's ACLs say who may publish
where), never from the payload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bridge.core.profiles.base import Draft, Payload, Profile, Rejected
from bridge.core.settings.accounts import ACCOUNT_LEVEL, prefix_levels

__all__ = ["ACCOUNT_KEY", "AccountPrefixed"]

ACCOUNT_KEY = "account"
"""The named level the account is read from (see :attr:`AccountPrefixed.account_level`)."""


class AccountPrefixed:
    """``inner``'s topics under ``prefix`` (levels ending with ``/``, one ``{account}``)."""

    def __init__(self, inner: Profile, prefix: str) -> None:
        self._inner = inner
        self._levels = prefix_levels(prefix)
        self._account_at = self._levels.index(ACCOUNT_LEVEL)
        self.account_level = ACCOUNT_KEY

    @property
    def name(self) -> str:
        return f"{self._inner.name} (under {'/'.join(self._levels)}/)"

    def topic_filters(self) -> list[str]:
        head = "/".join("+" if level == ACCOUNT_LEVEL else level for level in self._levels)
        return [f"{head}/{topic_filter}" for topic_filter in self._inner.topic_filters()]

    def match(self, levels: Sequence[str]) -> Mapping[str, str] | None:
        size = len(self._levels)
        if len(levels) <= size:
            return None
        for index, level in enumerate(self._levels):
            if index != self._account_at and levels[index] != level:
                return None
        named = self._inner.match(levels[size:])
        if named is None:
            return None
        return {**named, ACCOUNT_KEY: levels[self._account_at]}

    def interpret(self, named: Mapping[str, str], payload: Payload) -> Draft | Rejected:
        inner = {key: value for key, value in named.items() if key != ACCOUNT_KEY}
        return self._inner.interpret(inner, payload)
