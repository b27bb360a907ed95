"""Subscriptions made through the API on two real instances sharing one PostgreSQL store.

Two ``hookbridge run`` processes share the topics (a shared subscription) and
the store, each with its own admin API. An account's subscription made through
instance A gets events that instance B ingested (B recorded and delivered
them); a change made through B is in force on A; both instances restart and
it is still there; deleted through A, nothing more is sent to it, whichever
instance takes the messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import bridge_config
from tests.support.accounts import KEY, new_account
from tests.support.admin import TOKEN, Admin
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.postgres import PostgresDatabase, fetch
from tests.support.process import BridgeProcess, started_bridge
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

GROUP = "hookbridge-accounts"


def _config(mosquitto: Mosquitto, tmp_path: Path, url: str, name: str) -> dict[str, Any]:
    return bridge_config(
        mosquitto,
        tmp_path,
        [],
        mqtt={"client_id": name, "shared_group": GROUP},
        store={"url": url, "encryption_key": KEY},
        api={"listen": f"127.0.0.1:{free_port()}", "token": TOKEN},
        accounts={"topic_prefix": "tenants/{account}/"},
        presence={"enabled": False},
    )


def _messages(start: int, count: int, kind: str = "session.started") -> list[tuple[str, Any]]:
    return [
        (f"tenants/acme/devices/d{i % 7}/events", {"type": kind, "id": f"{kind}-{i}"})
        for i in range(start, start + count)
    ]


async def _delivered_by(url: str, name: str) -> dict[str, int]:
    rows = await fetch(
        url,
        "SELECT ingested_by, count(*) FROM deliveries"
        f" WHERE subscription = '{name}' AND status = 'delivered' GROUP BY 1",
    )
    return {row[0]: row[1] for row in rows}


async def _recorded(url: str, count: int) -> bool:
    """Every delivery's attempt is recorded (the receiver may hear of it first)."""
    return sum((await _delivered_by(url, "acme-crm")).values()) >= count


async def _events(url: str) -> int:
    return int((await fetch(url, "SELECT count(*) FROM events"))[0][0])


async def test_an_api_subscription_runs_on_every_instance_and_survives_restarts(
    mosquitto: Mosquitto, receiver: Receiver, postgres: PostgresDatabase, tmp_path: Path
) -> None:
    url = postgres.schema_url("accounts")
    first_config = _config(mosquitto, tmp_path, url, "hb-acct-a")
    second_config = _config(mosquitto, tmp_path, url, "hb-acct-b")
    first_api = Admin(f"http://{first_config['api']['listen']}")
    second_api = Admin(f"http://{second_config['api']['listen']}")
    try:
        with (
            started_bridge(first_config, tmp_path, "a") as first,
            started_bridge(second_config, tmp_path, "b") as second,
        ):
            token = await new_account(first_api, "acme")
            status, made = await first_api.post(
                "/api/subscriptions",
                json={"name": "acme-crm", "url": receiver.url, "events": ["*"]},
                token=token,
            )
            assert status == 201, made

            async def listed(api: Admin, etag: str) -> bool:
                status, body = await api.get("/api/subscriptions/acme-crm", token=token)
                return status == 200 and body["etag"] == etag

            await wait_until(lambda: listed(second_api, '"r1"'), timeout=5, message="B has it")
            total = 60
            with Publisher(mosquitto.port) as device:
                device.publish_all(_messages(0, total))
            await wait_until(lambda: len(receiver.unique_ids()) >= total, timeout=60)
            await wait_until(lambda: _recorded(url, total), timeout=30, message="recorded")
            shares = await _delivered_by(url, "acme-crm")
            # B ingested some of them and delivered them to what A made.
            assert set(shares) == {"hb-acct-a", "hb-acct-b"}, shares
            assert sum(shares.values()) == total

            # Changed through B: in force on A too (only device.* from now on).
            async with second_api.session.patch(
                second_api.base + "/api/subscriptions/acme-crm",
                json={"events": ["device.*"]},
                headers={"Authorization": f"Bearer {token}", "If-Match": '"r1"'},
            ) as response:
                assert response.status == 200, await response.text()
            await wait_until(lambda: listed(first_api, '"r2"'), timeout=5, message="A has it")
            with Publisher(mosquitto.port) as device:
                device.publish_all(_messages(100, 20) + _messages(200, 20, "device.added"))
            await wait_until(lambda: len(receiver.unique_ids()) >= total + 20, timeout=60)
            await wait_until(lambda: _events_at_least(url, total + 40), timeout=30)
            assert {e["type"] for e in receiver.events()[total:]} == {"device.added"}
            assert set(await _delivered_by(url, "acme-crm")) == {"hb-acct-a", "hb-acct-b"}

            # Both restart: it is still there, and still delivers (from both).
            for process in (first, second):
                assert process.terminate() == 0
            for process in (first, second):
                process.start()
                process.wait_subscribed()
            assert await listed(first_api, '"r2"') and await listed(second_api, '"r2"')
            with Publisher(mosquitto.port) as device:
                device.publish_all(_messages(300, 40, "device.deleted"))
            await wait_until(lambda: len(receiver.unique_ids()) >= total + 60, timeout=60)

            # Deleted through A: B learns it, and nothing more is sent to it.
            assert (await first_api.call("DELETE", "/api/subscriptions/acme-crm", token=token))[
                0
            ] == 204

            async def gone() -> bool:
                status, _ = await second_api.get("/api/subscriptions/acme-crm", token=token)
                return status == 404

            await wait_until(gone, timeout=5, message="B no longer has it")
            sent = len(receiver.requests)
            stored = await _events(url)
            with Publisher(mosquitto.port) as device:
                device.publish_all(_messages(400, 40, "device.added"))
            await wait_until(lambda: _events_at_least(url, stored + 40), timeout=30)
            assert len(receiver.requests) == sent
            pending = await fetch(
                url,
                "SELECT count(*) FROM deliveries WHERE subscription = 'acme-crm'"
                " AND status = 'pending'",
            )
            assert pending[0][0] == 0
            _check_logs(first, second, [token, made["secret"]])
    finally:
        await first_api.close()
        await second_api.close()


async def _events_at_least(url: str, count: int) -> bool:
    return await _events(url) >= count


def _check_logs(first: BridgeProcess, second: BridgeProcess, secrets: list[str]) -> None:
    """Neither instance ever logged a token or a secret."""
    for process in (first, second):
        for secret in secrets:
            assert secret not in process.log()
