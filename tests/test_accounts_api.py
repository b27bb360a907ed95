"""Two accounts with their own tokens on one bridge: each sees and manages only its own.

Devices publish under ``tenants/{account}/``; each account makes its own
subscription with its token. Each gets exactly its own devices' events; the
operator's subscription gets them all (and the events of no account). Then the
tests try hard to cross the line: names, ids, list filters, cursors, replay,
retry, dead letters, device pages and operator routes: another account's
objects answer 404, the operator's routes 403.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.core.presence import Presence
from tests.conftest import crm_subscription, running_bridge
from tests.support.accounts import accounts_config, new_account, subscribe
from tests.support.admin import Admin, admin_client
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver, receiving
from tests.support.waiting import wait_until

MESSAGES: list[tuple[str, Any]] = [
    ("tenants/acme/devices/d1/events", {"type": "session.started", "id": "a1"}),
    ("tenants/acme/devices/shared/events", {"type": "session.ended", "id": "a2"}),
    ("tenants/globex/devices/shared/events", {"type": "session.started", "id": "g1"}),
    ("tenants/globex/devices/g9/status", "online"),
    ("devices/plain/events", {"type": "session.started", "id": "p1"}),
]
OPERATOR_ONLY = [
    ("POST", "/api/reload"),
    ("GET", "/api/accounts"),
    ("POST", "/api/accounts"),
    ("DELETE", "/api/accounts/acme"),
    ("GET", "/api/accounts/acme/tokens"),
    ("POST", "/api/accounts/acme/tokens"),
    ("DELETE", "/api/accounts/acme/tokens/tok_x"),
    ("GET", "/api/rejected"),
    ("GET", "/api/inbound"),
    ("GET", "/api/inbound/inb_x"),
    ("GET", "/api/stats"),
    ("GET", "/api/freshness"),
    ("GET", "/metrics"),
]


async def _deliveries(admin: Admin, token: str | None, **params: str) -> list[dict[str, Any]]:
    status, body = await admin.get("/api/deliveries", token=token, params=params)
    assert status == 200, body
    found: list[dict[str, Any]] = body["deliveries"]
    return found


def _sources(receiver: Receiver) -> list[str]:
    """The topics of the device events a receiver got (the bridge's own alerts left out)."""
    return sorted(
        event["source"].split("/", 3)[3]
        for event in receiver.events()
        if event["source"].startswith("mqtt://")
    )


async def test_each_account_sees_and_gets_only_its_own(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    # globex's receiver refuses the g9 presence event for good: a dead letter of its own.
    async with (
        receiving() as acme_receiver,
        receiving(lambda r, _n: Answer(500 if b"g9" in r.body else 200)) as globex_receiver,
    ):
        config = accounts_config(
            mosquitto, tmp_path, [crm_subscription(receiver)], retry={"schedule": []}
        )
        async with running_bridge(config) as bridge, admin_client(config) as admin:
            acme = await new_account(admin, "acme")
            globex = await new_account(admin, "globex")
            await subscribe(admin, "acme-hook", acme_receiver.url, token=acme)
            await subscribe(admin, "globex-hook", globex_receiver.url, token=globex)
            with Publisher(mosquitto.port) as device:
                device.publish_all(MESSAGES)
            await wait_until(lambda: len(_sources(receiver)) == 5, message="operator gets all")
            await wait_until(lambda: len(acme_receiver.requests) == 2)
            await wait_until(lambda: len(globex_receiver.requests) == 2)

            async def settled() -> bool:
                return all(d["status"] != "pending" for d in await _deliveries(admin, None))

            await wait_until(settled, message="every attempt recorded")
            # Exactly their own devices' events, and nothing of the other or of no account.
            assert _sources(acme_receiver) == [
                "tenants/acme/devices/d1/events",
                "tenants/acme/devices/shared/events",
            ]
            assert _sources(globex_receiver) == [
                "tenants/globex/devices/g9/status",
                "tenants/globex/devices/shared/events",
            ]
            assert "devices/plain/events" in _sources(receiver)
            await _cross_the_line(admin, bridge, acme, globex)


async def _cross_the_line(admin: Admin, bridge: Any, acme: str, globex: str) -> None:
    # Subscriptions: their own, and 404 for the other's and for the operator's.
    status, listed = await admin.get("/api/subscriptions", token=acme)
    assert [s["name"] for s in listed["subscriptions"]] == ["acme-hook"]
    listed = (await admin.get("/api/subscriptions", token=acme, params={"account": "globex"}))[1]
    assert [s["name"] for s in listed["subscriptions"]] == ["acme-hook"]
    for name in ("globex-hook", "crm"):
        for method, path in (
            ("GET", f"/api/subscriptions/{name}"),
            ("PATCH", f"/api/subscriptions/{name}"),
            ("DELETE", f"/api/subscriptions/{name}"),
            ("POST", f"/api/subscriptions/{name}/rotate-secret"),
            ("POST", f"/api/subscriptions/{name}/disable"),
            ("POST", f"/api/subscriptions/{name}/enable"),
            ("POST", f"/api/subscriptions/{name}/test"),
        ):
            status, body = await admin.call(method, path, json={}, token=acme)
            assert status == 404, (method, path, body)
    assert "globex-hook" in {s.name for s in bridge.settings.subscriptions}

    # Deliveries: filters, cursors, ids, retry, dead letters.
    own = await _deliveries(admin, acme)
    assert {d["subscription"] for d in own} == {"acme-hook"} and len(own) == 2
    assert await _deliveries(admin, acme, subscription="globex-hook") == []
    assert {d["subscription"] for d in await _deliveries(admin, acme, account="globex")} == {
        "acme-hook"
    }
    assert await _deliveries(admin, acme, status="dead") == []
    dead = await _deliveries(admin, globex, status="dead")
    assert [(d["subscription"], d["account"]) for d in dead] == [("globex-hook", "globex")]
    theirs = await _deliveries(admin, globex)
    status, page = await admin.get("/api/deliveries", token=globex, params={"limit": "1"})
    cursor = page["next_cursor"]
    after = (await admin.get("/api/deliveries", token=acme, params={"cursor": cursor}))[1]
    assert {d["subscription"] for d in after["deliveries"]} <= {"acme-hook"}
    for delivery in theirs:
        assert (await admin.get(f"/api/deliveries/{delivery['id']}", token=acme))[0] == 404
        retried = await admin.post(f"/api/deliveries/{delivery['id']}/retry", token=acme)
        assert retried[0] == 404
        assert (await admin.get(f"/api/events/{delivery['event_id']}", token=acme))[0] == 404
    assert (await admin.get(f"/api/deliveries/{own[0]['id']}", token=acme))[0] == 200
    assert (await admin.get(f"/api/events/{own[0]['event_id']}", token=acme))[0] == 200

    # Replay: by id, by window, and to a target; only its own reaches its own.
    cases: list[dict[str, Any]] = [
        {"event_ids": [theirs[0]["event_id"]]},
        {"subscription": "globex-hook"},
        {"event_ids": [own[0]["event_id"]], "to": "globex-hook"},
        {"event_ids": [own[0]["event_id"]], "to": "crm"},
    ]
    for body in cases:
        status, answer = await admin.post("/api/replay", json=body, token=acme)
        assert status == 404, (body, answer)
    status, replayed = await admin.post(
        "/api/replay", json={"event_ids": [own[0]["event_id"]]}, token=acme
    )
    assert status == 200
    assert [d["subscription"] for d in replayed["deliveries"]] == ["acme-hook"]

    # Devices: the same id in two accounts is two devices; each sees its own.
    status, devices = await admin.get("/api/devices", token=acme)
    assert [(d["device_id"], d["account"]) for d in devices["devices"]] == [
        ("d1", "acme"),
        ("shared", "acme"),
    ]
    status, devices = await admin.get("/api/devices", token=acme, params={"prefix": "g"})
    assert devices["devices"] == []
    for params in ({"account": "globex"}, {"state": "online"}, {"account": ""}):
        status, devices = await admin.get("/api/devices", token=acme, params=params)
        assert {d["account"] for d in devices["devices"]} <= {"acme"}, params
    status, page = await admin.get("/api/devices", token=globex, params={"limit": "1"})
    status, after = await admin.get(
        "/api/devices", token=acme, params={"cursor": page["next_cursor"]}
    )
    assert status == 200 and {d["account"] for d in after["devices"]} <= {"acme"}
    status, shared = await admin.get("/api/devices/shared", token=acme)
    assert status == 200 and shared["account"] == "acme"
    assert [e["type"] for e in shared["events"]] == ["session.ended"]
    subscriptions = {x["subscription"] for e in shared["events"] for x in e["deliveries"]}
    assert subscriptions == {"acme-hook"}  # not the operator's delivery of the same event
    status, shared = await admin.get("/api/devices/shared", token=globex)
    assert shared["account"] == "globex" and shared["events"][0]["type"] == "session.started"
    assert (await admin.get("/api/devices/g9", token=acme))[0] == 404
    assert (await admin.get("/api/devices/g9", token=acme, params={"account": "globex"}))[0] == 404
    assert (await admin.call("DELETE", "/api/devices/g9", token=acme))[0] == 404
    assert await bridge.store.get_presence("g9", "globex") is not None

    # The operator sees every account's, and names a device's account to read it.
    status, everyone = await admin.get("/api/devices")
    assert sorted((d["device_id"], d["account"]) for d in everyone["devices"]) == [
        ("d1", "acme"),
        ("g9", "globex"),
        ("plain", None),
        ("shared", "acme"),
        ("shared", "globex"),
    ]
    status, g9 = await admin.get("/api/devices/g9", params={"account": "globex"})
    assert status == 200 and g9["state"] == Presence.ONLINE.value

    # The audit trail: its own rows only.
    status, audit = await admin.get("/api/audit", token=acme)
    assert {e["account"] for e in audit["entries"]} == {"acme"}
    status, audit = await admin.get("/api/audit", token=acme, params={"account": "globex"})
    assert status == 400
    status, page = await admin.get("/api/audit", token=globex, params={"limit": "1"})
    status, after = await admin.get(
        "/api/audit", token=acme, params={"cursor": page["next_cursor"]}
    )
    assert status == 200 and {e["account"] for e in after["entries"]} == {"acme"}

    # The operator's routes: 403, whatever the path names; unknown paths stay 404.
    for method, path in OPERATOR_ONLY:
        status, body = await admin.call(method, path, json={}, token=acme)
        assert (status, body["error"]) == (403, "operator token required"), (method, path)
    assert (await admin.get("/api/nothing-here", token=acme))[0] == 404
    status, me = await admin.get("/api/whoami", token=acme)
    assert me == {"operator": False, "account": "acme", "token_id": await _token_id(admin, "acme")}


async def _token_id(admin: Admin, account: str) -> str:
    status, tokens = await admin.get(f"/api/accounts/{account}/tokens")
    assert status == 200
    (token,) = tokens["tokens"]
    found: str = token["id"]
    return found


async def test_revoked_tokens_and_removed_accounts_lose_access_at_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with receiving(lambda _r, _n: Answer(500)) as failing:
        config = accounts_config(mosquitto, tmp_path, retry={"schedule": ["1h"]})
        async with running_bridge(config) as bridge, admin_client(config) as admin:
            token = await new_account(admin, "acme")
            second = (await admin.post("/api/accounts/acme/tokens", json={}))[1]
            assert second["token"].startswith("hbt_") and second["token"] != token
            await subscribe(admin, "acme-hook", failing.url, token=token)
            assert (await admin.get("/api/subscriptions", token=second["token"]))[0] == 200
            status, _ = await admin.call("DELETE", f"/api/accounts/acme/tokens/{second['id']}")
            assert status == 204
            assert (await admin.get("/api/subscriptions", token=second["token"]))[0] == 401
            assert (await admin.get("/api/subscriptions", token=token))[0] == 200
            with Publisher(mosquitto.port) as device:
                device.publish_all([("tenants/acme/devices/d1/events", {"type": "device.added"})])
            await wait_until(lambda: len(failing.requests) == 1)

            async def waiting() -> bool:
                return await bridge.store.queue_depth("acme-hook") == 1

            await wait_until(waiting, message="the delivery waits for its retry")
            assert (await admin.call("DELETE", "/api/accounts/acme"))[0] == 204
            assert (await admin.get("/api/subscriptions", token=token))[0] == 401
            assert "acme-hook" not in {s.name for s in bridge.settings.subscriptions}
            page, _ = await bridge.store.list_deliveries(
                subscription="acme-hook", status=None, since=None, until=None, cursor=None, limit=5
            )
            assert [(d.status.value, d.dead_reason) for d in page] == [("dead", "deleted")]
            assert (await admin.call("DELETE", "/api/accounts/acme"))[0] == 404
            status, audit = await admin.get("/api/audit", params={"account": "acme"})
            deleted = audit["entries"][0]
            assert deleted["action"] == "account.deleted"
            assert deleted["changes"] == {"subscriptions": ["acme-hook"], "tokens": 1}


async def test_presence_events_the_bridge_makes_take_the_devices_account(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with receiving() as acme_receiver, receiving() as globex_receiver:
        config = accounts_config(
            mosquitto, tmp_path, presence={"offline_after": "300ms", "timeout_for": "all"}
        )
        async with running_bridge(config) as bridge, admin_client(config) as admin:
            acme = await new_account(admin, "acme")
            globex = await new_account(admin, "globex")
            await subscribe(admin, "acme-hook", acme_receiver.url, token=acme, events=["device.*"])
            await subscribe(
                admin, "globex-hook", globex_receiver.url, token=globex, events=["device.*"]
            )
            with Publisher(mosquitto.port) as device:
                device.publish_all(
                    [("tenants/acme/devices/pump/events", {"type": "session.started"})]
                )
            await wait_until(
                lambda: any(e["type"] == "device.offline" for e in acme_receiver.events()),
                message="a timed-out offline of acme's device",
            )
            (offline,) = acme_receiver.events()
            assert offline["data"] == {**offline["data"], "device_id": "pump"}
            assert offline["data"]["reason"] == "heartbeat_timeout"
            assert globex_receiver.requests == []
            state = await bridge.store.get_presence("pump", "acme")
            assert state is not None and state.state is Presence.OFFLINE
            assert await bridge.store.get_presence("pump") is None
