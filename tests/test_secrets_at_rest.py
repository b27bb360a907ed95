"""Secrets at rest: what the API is given to keep is sealed with store.encryption_key.

The plaintext of an API-made secret (a signing secret, a header value, a bearer
token) is in neither the SQLite file's bytes nor the PostgreSQL table; a store
holding sealed secrets does not start without its key (named), nor with
another key unless the old one is in ``store.encryption_keys_old``, after which
the rows are sealed again with the new key; ``hookbridge keys encryption``
prints only a key. Names: a file that gives a name an API subscription holds
stops run, check-config and a reload, naming both.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

from bridge.app import Bridge
from bridge.config import parse_config
from bridge.errors import ConfigError
from bridge.store.sealing import Sealer
from tests.conftest import crm_subscription, running_bridge
from tests.support.accounts import KEY, OLD_KEY, accounts_config, new_account, subscribe
from tests.support.admin import admin_client
from tests.support.cli import run_cli
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import PostgresDatabase, fetch
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

HEADER_VALUE = "header-value-that-is-a-secret-0123"
BEARER = "bearer-token-of-the-receiver-4567"


async def _make_secret_things(config: dict[str, Any], url: str) -> list[str]:
    """An account (with a token) and its subscription with a generated secret, rotated, a
    header and a bearer token; the plaintexts the store must never hold."""
    async with running_bridge(config), admin_client(config) as admin:
        token = await new_account(admin, "acme")
        made = await subscribe(
            admin,
            "sealed",
            url,
            token=token,
            headers={"X-Api-Key": HEADER_VALUE},
            auth={"type": "bearer", "token": BEARER},
        )
        status, rotated = await admin.post("/api/subscriptions/sealed/rotate-secret", json={})
        assert status == 200
        # The account's token too: the store keeps its SHA-256 only.
        return [made["secret"], rotated["secret"], HEADER_VALUE, BEARER, token]


def _forms(secret: str) -> list[bytes]:
    """A secret as text, and the bytes a whsec_ secret signs with, as they could be kept."""
    forms = [secret.encode()]
    if secret.startswith("whsec_"):
        forms.append(secret.removeprefix("whsec_").encode())
    return forms


def _database_bytes(folder: Path) -> bytes:
    """The SQLite file and its write-ahead log, as they lie on the disk."""
    files = [p for p in folder.iterdir() if p.name.startswith("hookbridge.db")]
    return b"".join(p.read_bytes() for p in files)


async def test_sqlite_file_holds_no_plaintext_secret(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = accounts_config(mosquitto, tmp_path)
    secrets = await _make_secret_things(config, receiver.url)
    raw = _database_bytes(tmp_path)
    assert b"sealed" in raw  # the subscription is in there, by name
    for secret in secrets:
        for form in _forms(secret):
            assert form not in raw, secret[:6]


async def test_postgres_table_holds_no_plaintext_secret(
    mosquitto: Mosquitto, receiver: Receiver, postgres: PostgresDatabase, tmp_path: Path
) -> None:
    url = postgres.schema_url("sealed")
    config = accounts_config(mosquitto, tmp_path, store={"url": url})
    secrets = await _make_secret_things(config, receiver.url)
    rows = await fetch(
        url, "SELECT name, spec, sealed, encode(sealed, 'escape') FROM managed_subscriptions"
    )
    assert [row[0] for row in rows] == ["sealed"]
    text = " ".join(str(value) for row in rows for value in row)
    audit = " ".join(str(r[0]) for r in await fetch(url, "SELECT changes FROM audit"))
    tokens = " ".join(str(r[0]) for r in await fetch(url, "SELECT digest FROM account_tokens"))
    for secret in secrets:
        assert secret not in text and secret not in audit and secret not in tokens, secret[:6]


async def _start(config: dict[str, Any]) -> None:
    """Run a bridge of ``config`` until it has started, then stop it; what run() raises."""
    bridge = Bridge(parse_config(config))
    task = asyncio.create_task(bridge.run(grace=1.0))
    try:
        await wait_until(lambda: bridge.started.is_set() or task.done(), timeout=15)
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 20)


async def test_a_store_with_sealed_secrets_needs_its_key_and_old_keys_still_open(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = accounts_config(mosquitto, tmp_path, store={"encryption_key": OLD_KEY})
    secrets = await _make_secret_things(config, receiver.url)

    without = {**config, "store": {**config["store"], "encryption_key": ""}}
    with pytest.raises(ConfigError, match=r"store\.encryption_key is not set"):
        await _start(without)
    other = {**config, "store": {**config["store"], "encryption_key": KEY}}
    with pytest.raises(ConfigError, match=r"store\.encryption_keys_old"):
        await _start(other)

    # The new key, with the old one beside it: it starts and seals every row again.
    rotated = {**config, "store": {**config["store"], "encryption_keys_old": [OLD_KEY]}}
    rotated["store"]["encryption_key"] = KEY
    async with running_bridge(rotated) as bridge:
        (row,) = await bridge.store.stored_subscriptions()
        assert row.sealed is not None
        assert not bridge.managed.sealer.stale(row.sealed)
        with Publisher(mosquitto.port) as device:
            device.publish_all([("tenants/acme/devices/d1/events", {"type": "device.added"})])
        await wait_until(lambda: len(receiver.requests) == 1)
        assert receiver.requests[0].headers["x-api-key"] == HEADER_VALUE
        assert receiver.requests[0].headers["authorization"] == f"Bearer {BEARER}"
    # Now the new key alone opens it.
    alone = {**config, "store": {**config["store"], "encryption_key": KEY}}
    async with running_bridge(alone) as bridge:
        assert len(bridge.managed.secrets["sealed"]["secret"]) == 2
        assert bridge.managed.secrets["sealed"]["secret"][0]["value"] == secrets[1]


def test_a_sealer_never_opens_with_the_wrong_key_and_names_no_secret() -> None:
    settings = parse_config({"store": {"encryption_key": KEY}}).store
    sealed = Sealer(settings).seal({"secret": [{"value": "whsec_topsecret", "expires_at": None}]})
    assert b"topsecret" not in sealed
    wrong = parse_config({"store": {"encryption_key": OLD_KEY}}).store
    with pytest.raises(ConfigError) as raised:
        Sealer(wrong).open(sealed, name="x")
    assert "topsecret" not in str(raised.value) and KEY not in str(raised.value)
    assert repr(Sealer(settings)) == "Sealer(key=set)"


def test_encryption_keys_are_checked_at_load_and_the_cli_prints_one() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"store": {"encryption_key": "not-a-fernet-key-but-long-enough"}})
    assert raised.value.problems[0].startswith("store.encryption_key: is not a Fernet key")
    assert "not-a-fernet-key" not in str(raised.value.problems)
    with pytest.raises(ConfigError) as raised:
        parse_config({"store": {"encryption_keys_old": [KEY, "x" * 44]}})
    assert raised.value.problems[0].startswith("store.encryption_keys_old[1]: is not a Fernet")
    assert parse_config({"store": {"encryption_key": ""}}).store.encryption_key is None
    done = run_cli("keys", "encryption")
    assert done.returncode == 0
    key = done.stdout.strip()
    assert done.stdout == key + "\n"
    Fernet(key)  # a key and nothing else


async def test_a_file_name_held_by_an_api_subscription_stops_run_check_config_and_reload(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = accounts_config(mosquitto, tmp_path, [crm_subscription(receiver)])
    path = tmp_path / "hookbridge.yaml"
    path.write_text(yaml.safe_dump(config))
    bridge = Bridge(parse_config(config), config_path=path)
    task = asyncio.create_task(bridge.run(grace=1.0))
    try:
        await wait_until(lambda: bridge.ingest.subscribed, timeout=15)
        async with admin_client(config) as admin:
            token = await new_account(admin, "acme")
            await subscribe(admin, "tickets", receiver.url, token=token)
            # A reload of the file keeps what the API made...
            config["subscriptions"].append({"name": "extra", "url": receiver.url})
            path.write_text(yaml.safe_dump(config))
            status, body = await admin.post("/api/reload")
            assert status == 200 and body["added"] == ["extra"], body
            names = {s.name for s in bridge.settings.subscriptions}
            assert names == {"crm", "extra", "tickets"}
            # ...and refuses a file that takes one of its names, naming both.
            config["subscriptions"].append({"name": "tickets", "url": receiver.url})
            path.write_text(yaml.safe_dump(config))
            status, body = await admin.post("/api/reload")
            assert status == 400
            assert body["problems"] == [
                "subscriptions[2].name: 'tickets' is held by a subscription made through the "
                "API (of account acme); rename the one in the file, or delete the other"
            ]
    finally:
        bridge.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)

    checked = run_cli("check-config", str(path))
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert (
        "subscriptions[2].name: 'tickets' is held by a subscription made through the API of "
        "account acme" in checked.stderr
    )
    with pytest.raises(ConfigError, match=r"subscriptions\[2\]\.name: 'tickets' is held"):
        await _start(config)
    config["subscriptions"].pop()
    path.write_text(yaml.safe_dump(config))
    assert run_cli("check-config", str(path)).returncode == 0
