"""Accounts: what the ``accounts:`` section says, and the values accounts are made of.

An *account* is one customer of the platform the bridge serves: its devices
publish under topics that name it, and its people manage their own webhook
subscriptions through the API with a token of theirs. The account of an event
comes only from its topic, never from its payload (a device must not choose
its account): a rule's ``account: topic.<level>``, or for the native topics
``accounts.topic_prefix`` (``tenants/{account}/``).

Pure: no I/O. The Fernet key check only decodes the key (32 bytes of
URL-safe base64 is all a Fernet key is), so the core needs no cryptography.
"""

from __future__ import annotations

import base64
import binascii
import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bridge.core.settings.fields import Duration

__all__ = [
    "ACCOUNT_ID",
    "ACCOUNT_LEVEL",
    "AccountsSettings",
    "account_problem",
    "check_fernet_key",
    "prefix_levels",
]

ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""What an account id is: a letter or digit, then letters, digits, ``_ . -``; 64 at most."""

ACCOUNT_LEVEL = "{account}"
"""The level of ``accounts.topic_prefix`` that names the account."""

_FERNET_KEY_BYTES = 32


def account_problem(value: str) -> str | None:
    """Why ``value`` is not an account id, or None."""
    if ACCOUNT_ID.match(value):
        return None
    return (
        "an account id is 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    )


def check_fernet_key(value: SecretStr) -> SecretStr:
    """A Fernet key: 32 bytes in URL-safe base64 (what ``hookbridge keys encryption`` prints).

    The message never quotes the key.
    """
    text = value.get_secret_value().strip()
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != _FERNET_KEY_BYTES:
        raise ValueError(
            "is not a Fernet key (32 bytes in URL-safe base64, 44 characters); "
            "make one with: hookbridge keys encryption"
        )
    return SecretStr(text)


def prefix_levels(prefix: str) -> list[str]:
    """The topic levels of a ``topic_prefix`` (``tenants/{account}/`` → two levels)."""
    return prefix.removesuffix("/").split("/")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class AccountsSettings(_Model):
    """``accounts:``: where the native topics name the account, and what an account may do."""

    # The native topics with the account before them: ``tenants/{account}/`` reads
    # ``tenants/acme/devices/dev-1/events`` as device dev-1 of account acme. The plain
    # native topics keep working (their events belong to no account).
    topic_prefix: str | None = None
    # How many subscriptions one account may hold (operator subscriptions do not count).
    max_subscriptions: int = Field(default=50, ge=1, le=100_000)
    # After a secret rotation the previous secret keeps signing beside the new one this long.
    secret_grace: Duration = Field(default=86400.0, ge=0)

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.endswith("/") or value.startswith("/"):
            raise ValueError("must be topic levels ending with '/', e.g. tenants/{account}/")
        levels = prefix_levels(value)
        if levels.count(ACCOUNT_LEVEL) != 1:
            raise ValueError("must have exactly one level {account}, e.g. tenants/{account}/")
        for level in levels:
            if level == ACCOUNT_LEVEL:
                continue
            if not level or any(c in level for c in "+#{}$"):
                raise ValueError(
                    f"level '{level}' must be literal text (no wildcard, no other {{name}})"
                )
        return value
