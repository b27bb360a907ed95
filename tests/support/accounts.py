"""Helpers for tests of accounts and the subscriptions made through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.admin import Admin, admin_config
from tests.support.mosquitto import Mosquitto

__all__ = ["KEY", "OLD_KEY", "accounts_config", "new_account", "subscribe"]

# Fernet keys for the tests (32 bytes, URL-safe base64), never used elsewhere.
KEY = "gx8IGO2PM1f3hLBXFZ8Z1WqZLfEKmw9xQPjmkXu34Dk="
OLD_KEY = "AV2lPbiRk7ZK1sTbyAJ9fn2c3BSv6aIIrZCejLsl0Ts="


def accounts_config(
    broker: Mosquitto,
    tmp_path: Path,
    subscriptions: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A bridge with the admin API, an encryption key and native topics under
    ``tenants/{account}/``."""
    store = {"encryption_key": KEY, **overrides.pop("store", {})}
    accounts = {"topic_prefix": "tenants/{account}/", **overrides.pop("accounts", {})}
    config = admin_config(broker, tmp_path, subscriptions or [], accounts=accounts, **overrides)
    config["store"] = {**config["store"], **store}
    return config


async def new_account(admin: Admin, account: str) -> str:
    """Make ``account`` and issue it a token; the token."""
    status, body = await admin.post("/api/accounts", json={"id": account})
    assert status == 201, body
    status, body = await admin.post(f"/api/accounts/{account}/tokens", json={})
    assert status == 201, body
    token = body["token"]
    assert isinstance(token, str)
    return token


async def subscribe(
    admin: Admin, name: str, url: str, *, token: str | None = None, **fields: Any
) -> dict[str, Any]:
    """Make a subscription through the API (as ``token``'s account, else the operator)."""
    status, body = await admin.post(
        "/api/subscriptions", json={"name": name, "url": url, **fields}, token=token
    )
    assert status == 201, body
    assert isinstance(body, dict)
    return body
