"""Secrets at rest: what the store keeps of a subscription's secrets is sealed.

The secrets of a subscription made through the API (its signing secrets, header
values, bearer and OAuth2 credentials) are one JSON document, sealed with
Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) under
``store.encryption_key``. Keys named in ``store.encryption_keys_old`` still
open what they sealed (``MultiFernet``): the bridge seals such rows again with
the current key when it starts, and the old key can then go.

Without a key nothing can be sealed: making a subscription that holds a secret
is refused, and a store that already holds sealed secrets does not start. No
message here ever carries a secret or a key.
"""

from __future__ import annotations

from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bridge.config import StoreSettings
from bridge.errors import ConfigError

__all__ = ["KEY_SETTING", "Sealer"]

KEY_SETTING = "store.encryption_key"


class Sealer:
    """Seals and opens secret documents with the configured keys."""

    def __init__(self, settings: StoreSettings) -> None:
        keys = [settings.encryption_key, *settings.encryption_keys_old]
        fernets = [Fernet(key.get_secret_value()) for key in keys if key is not None]
        self._current = None if settings.encryption_key is None else fernets[0]
        self._all = MultiFernet(fernets) if fernets else None

    def __repr__(self) -> str:
        return f"Sealer(key={'set' if self.has_key else 'none'})"

    @property
    def has_key(self) -> bool:
        return self._current is not None

    def seal(self, secrets: dict[str, Any]) -> bytes:
        """The sealed form of ``secrets`` under the current key."""
        if self._current is None:
            raise ConfigError(f"{KEY_SETTING} is not set: secrets cannot be kept")
        return self._current.encrypt(orjson.dumps(secrets))

    def open(self, sealed: bytes, *, name: str) -> dict[str, Any]:
        """What ``sealed`` holds; the subscription's ``name`` says where a failure is."""
        if self._all is None:
            raise ConfigError(
                f"the store holds sealed secrets (subscription '{name}') but {KEY_SETTING} "
                "is not set; set it to the key they were sealed with"
            )
        try:
            opened: dict[str, Any] = orjson.loads(self._all.decrypt(sealed))
        except (InvalidToken, orjson.JSONDecodeError, ValueError) as exc:
            raise _wrong_key(name) from exc
        return opened

    def stale(self, sealed: bytes) -> bool:
        """Whether ``sealed`` was sealed with an older key than the current one."""
        if self._current is None:
            return False
        try:
            self._current.decrypt(sealed)
        except InvalidToken:
            return True
        return False

    def reseal(self, sealed: bytes, *, name: str) -> bytes:
        """``sealed`` sealed again with the current key."""
        if self._all is None or self._current is None:
            raise ConfigError(f"{KEY_SETTING} is not set: secrets cannot be sealed again")
        try:
            return self._all.rotate(sealed)
        except InvalidToken as exc:
            raise _wrong_key(name) from exc


def _wrong_key(name: str) -> ConfigError:
    return ConfigError(
        f"{KEY_SETTING} does not open the secrets of subscription '{name}': they were "
        "sealed with another key; put that key in store.encryption_keys_old"
    )
