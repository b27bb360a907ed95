"""The admin API against a running bridge: auth, every endpoint, errors, no secrets."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bridge.admin.openapi import openapi_document
from bridge.admin.params import parse_time
from bridge.admin.server import create_app
from bridge.app import Bridge
from bridge.config import parse_config
from tests.conftest import SECRET, running_bridge
from tests.support.admin import TOKEN, Admin, admin_client, admin_config
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver, receiving
from tests.support.waiting import wait_until

HEADER_SECRET = "tok_header_value_never_shown"


def _crm(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {
        "name": "crm",
        "url": receiver.url,
        "secret": SECRET,
        "headers": {"Authorization": f"Bearer {HEADER_SECRET}"},
        **extra,
    }


CrmBridge = tuple[Bridge, Admin]


@pytest.fixture
async def crm_bridge(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> AsyncIterator[CrmBridge]:
    """A bridge with the admin API whose one subscription, crm, sends to ``receiver``."""
    config = admin_config(mosquitto, tmp_path, [_crm(receiver)])
    async with running_bridge(config) as bridge, admin_client(config) as admin:
        yield bridge, admin


def _event(n: int, device: str = "dev-1") -> tuple[str, dict[str, Any]]:
    return f"devices/{device}/events", {"type": "session.started", "id": f"m-{n}"}


async def test_auth_health_and_dashboard(crm_bridge: CrmBridge) -> None:
    _, admin = crm_bridge
    assert await admin.get("/healthz", token="") == (200, {"status": "ok"})
    status, ready = await admin.get("/readyz", token="")
    assert status == 200
    assert ready == {
        "ready": True,
        "broker_connected": True,
        "store_writable": True,
        "store_blocked": False,
        "reasons": [],
    }
    for path in ("/metrics", "/api/subscriptions", "/api/deliveries", "/api/openapi.json"):
        status, body = await admin.get(path, token="")
        assert status == 401, path
        assert body == {"error": "missing or wrong bearer token"}
        status, _ = await admin.get(path, token="wrong-token-of-same-size!")
        assert status == 401, path
    status, _ = await admin.post("/api/reload", token="")
    assert status == 401
    status, page = await admin.get("/", token="")
    assert status == 200
    assert "<title>HookBridge</title>" in page
    status, page = await admin.get("/dashboard", token="")
    assert status == 200
    status, body = await admin.get("/api/nowhere")
    assert status == 404
    assert "error" in body


async def test_subscriptions_show_health_and_no_secret(
    mosquitto: Mosquitto, receiver: Receiver, crm_bridge: CrmBridge
) -> None:
    _, admin = crm_bridge
    with Publisher(mosquitto.port) as device:
        device.publish_all([_event(1)])
    await wait_until(lambda: len(receiver.requests) == 1)

    async def succeeded() -> bool:
        _, body = await admin.get("/api/subscriptions")
        health = body["subscriptions"][0]["health"]
        return health["last_success"] is not None and health["queue_depth"] == 0

    await wait_until(succeeded, message="last success recorded")
    status, body = await admin.get("/api/subscriptions")
    assert status == 200
    (crm,) = body["subscriptions"]
    assert crm["name"] == "crm"
    assert crm["secret"] == "set"
    assert crm["headers"] == ["Authorization"]
    health = crm["health"]
    assert health["disabled"] is False
    assert health["queue_depth"] == 0
    assert health["in_flight"] == 0
    assert health["failing_since"] is None
    text = str(body)
    assert SECRET not in text
    assert HEADER_SECRET not in text
    assert TOKEN not in text


async def test_disable_holds_deliveries_and_enable_sends_them(
    mosquitto: Mosquitto, receiver: Receiver, crm_bridge: CrmBridge
) -> None:
    bridge, admin = crm_bridge
    status, body = await admin.post("/api/subscriptions/crm/disable")
    assert status == 200
    assert body["health"]["disabled"] is True
    with Publisher(mosquitto.port) as device:
        device.publish_all([_event(1), _event(2)])

    async def queued() -> bool:
        return await bridge.store.queue_depth("crm") == 2

    await wait_until(queued, message="two deliveries waiting")
    assert receiver.requests == []
    status, body = await admin.post("/api/subscriptions/crm/enable")
    assert status == 200
    assert body["health"]["disabled"] is False
    await wait_until(lambda: len(receiver.requests) == 2, message="held deliveries sent")
    assert (await admin.post("/api/subscriptions/nope/disable"))[0] == 404
    assert (await admin.post("/api/subscriptions/nope/enable"))[0] == 404


async def test_test_ping_answers_with_the_attempt(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    async with receiving(lambda _r, _n: Answer(503, body=b"down for maintenance")) as failing:
        config = admin_config(
            mosquitto,
            tmp_path,
            [_crm(receiver), {"name": "broken", "url": failing.url, "secret": SECRET}],
        )
        async with running_bridge(config), admin_client(config) as admin:
            status, ping = await admin.post("/api/subscriptions/crm/test")
            assert status == 200
            assert ping["outcome"] == "delivered"
            assert ping["status_code"] == 200
            assert ping["latency_ms"] > 0
            (request,) = receiver.requests
            assert request.json()["type"] == "bridge.test"
            assert request.json()["data"]["subscription"] == "crm"
            assert request.headers["webhook-id"] == ping["event_id"]
            status, delivery = await admin.get(f"/api/deliveries/{ping['delivery_id']}")
            assert status == 200
            assert delivery["status"] == "delivered"
            assert [a["status_code"] for a in delivery["attempt_log"]] == [200]

            status, ping = await admin.post("/api/subscriptions/broken/test")
            assert status == 200
            assert ping["outcome"] == "failed"
            assert ping["status_code"] == 503
            assert ping["response_excerpt"] == "down for maintenance"
            _, delivery = await admin.get(f"/api/deliveries/{ping['delivery_id']}")
            assert delivery["status"] == "dead"
            assert delivery["dead_reason"] == "test_failed"
            assert len(failing.requests) == 1

            status, body = await admin.post("/api/subscriptions/nope/test")
            assert (status, body) == (404, {"error": "no subscription named 'nope'"})


async def test_deliveries_events_paging_and_retry(
    mosquitto: Mosquitto, receiver: Receiver, crm_bridge: CrmBridge
) -> None:
    _, admin = crm_bridge
    with Publisher(mosquitto.port) as device:
        device.publish_all([_event(n) for n in range(3)])
    await wait_until(lambda: len(receiver.requests) == 3)

    async def all_delivered() -> bool:
        _, page = await admin.get("/api/deliveries", params={"status": "delivered"})
        return len(page["deliveries"]) == 3

    await wait_until(all_delivered, message="three delivered")
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": "1", "subscription": "crm"}
        if cursor:
            params["cursor"] = cursor
        status, page = await admin.get("/api/deliveries", params=params)
        assert status == 200
        seen += [d["id"] for d in page["deliveries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 3
    assert seen == sorted(seen, reverse=True)
    _, window = await admin.get(
        "/api/deliveries", params={"since": "2000-01-01T00:00:00Z", "until": "1"}
    )
    assert window["deliveries"] == []

    status, delivery = await admin.get(f"/api/deliveries/{seen[0]}")
    assert status == 200
    assert delivery["attempts"] == 1
    assert delivery["attempt_log"][0]["status_code"] == 200
    status, event = await admin.get(f"/api/events/{delivery['event_id']}")
    assert status == 200
    assert event == delivery["event"]
    assert event["type"] == "session.started"

    status, retried = await admin.post(f"/api/deliveries/{seen[0]}/retry")
    assert status == 200
    assert retried["status"] == "pending"
    await wait_until(lambda: len(receiver.requests) == 4, message="retried delivery sent")
    assert receiver.requests[-1].headers["webhook-id"] == delivery["event_id"]
    assert receiver.requests[-1].headers["hookbridge-attempt"] == "2"

    for path, expected in (
        ("/api/deliveries/dlv_nope", 404),
        ("/api/events/evt_nope", 404),
        ("/api/deliveries?status=lost", 400),
        ("/api/deliveries?limit=0", 400),
        ("/api/deliveries?limit=many", 400),
        ("/api/deliveries?since=yesterday", 400),
        ("/api/deliveries?cursor=garbage!", 400),
    ):
        status, body = await admin.get(path)
        assert status == expected, (path, body)
        assert isinstance(body["error"], str)
    assert (await admin.post("/api/deliveries/dlv_nope/retry"))[0] == 404


async def test_retry_of_a_waiting_delivery_sends_it_now_without_using_a_step(
    mosquitto: Mosquitto, failing_receiver: Receiver, tmp_path: Path
) -> None:
    """One step in the schedule: a second failure on schedule would make it dead. Sent
    now by the operator, its failure waits the same step again: still pending."""
    config = admin_config(
        mosquitto,
        tmp_path,
        [{"name": "crm", "url": failing_receiver.url}],
        retry={"schedule": ["1h"], "jitter": 0.0},
    )
    async with running_bridge(config), admin_client(config) as admin:
        with Publisher(mosquitto.port) as device:
            device.publish_all([_event(1)])

        async def attempts() -> int:
            _, page = await admin.get("/api/deliveries")
            return page["deliveries"][0]["attempts"] if page["deliveries"] else 0

        await wait_until(lambda: _equals(attempts(), 1), message="first attempt recorded")
        _, page = await admin.get("/api/deliveries")
        (delivery,) = page["deliveries"]
        assert (delivery["status"], delivery["last_status_code"]) == ("pending", 500)
        waiting_until = parse_time(delivery["next_attempt_at"], "next")
        assert waiting_until > time.time() + 3000
        status, body = await admin.post(f"/api/deliveries/{delivery['id']}/retry")
        assert status == 200, body
        assert body["status"] == "pending"
        await wait_until(lambda: _equals(attempts(), 2), message="sent again at once")
        _, again = await admin.get(f"/api/deliveries/{delivery['id']}")
        assert again["status"] == "pending"  # not dead: the early attempt kept its step
        assert parse_time(again["next_attempt_at"], "next") > time.time() + 3000
        assert len(again["attempt_log"]) == 2


async def test_retry_of_a_delivery_in_flight_is_a_conflict(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with receiving(lambda _r, _n: Answer(200, delay=3.0)) as slow:
        config = admin_config(mosquitto, tmp_path, [{"name": "crm", "url": slow.url}])
        async with running_bridge(config) as bridge, admin_client(config) as admin:
            with Publisher(mosquitto.port) as device:
                device.publish_all([_event(1)])
            await wait_until(lambda: len(slow.requests) == 1, message="attempt in flight")
            _, page = await admin.get("/api/deliveries")
            (delivery,) = page["deliveries"]
            before = await bridge.store.get_delivery(delivery["id"])
            status, body = await admin.post(f"/api/deliveries/{delivery['id']}/retry")
            assert status == 409
            assert "in flight" in body["error"]
            after = await bridge.store.get_delivery(delivery["id"])
            assert before is not None and after is not None
            assert after.lease_token == before.lease_token  # never bumped
            await wait_until(
                lambda: _equals(_status(admin, delivery["id"]), "delivered"),
                message="the attempt in flight decided",
            )
            assert len(slow.requests) == 1


async def test_flush_during_an_outage_makes_every_pending_delivery_due(
    mosquitto: Mosquitto, failing_receiver: Receiver, tmp_path: Path
) -> None:
    config = admin_config(
        mosquitto,
        tmp_path,
        [{"name": "crm", "url": failing_receiver.url, "circuit": {"failures": 100}}],
        retry={"schedule": ["1h", "2h"], "jitter": 0.0},
    )
    async with running_bridge(config), admin_client(config) as admin:
        with Publisher(mosquitto.port) as device:
            device.publish_all([_event(n) for n in range(3)])

        async def all_tried(times: int) -> bool:
            _, page = await admin.get("/api/deliveries")
            found = page["deliveries"]
            return len(found) == 3 and all(d["attempts"] == times for d in found)

        await wait_until(lambda: all_tried(1), message="each failed once")
        _, page = await admin.get("/api/deliveries")
        assert all(
            parse_time(d["next_attempt_at"], "n") > time.time() + 3000 for d in page["deliveries"]
        )
        status, body = await admin.post("/api/subscriptions/crm/flush")
        assert (status, body) == (200, {"subscription": "crm", "due_now": 3})
        await wait_until(lambda: all_tried(2), message="each sent again at once")
        _, page = await admin.get("/api/deliveries")
        for d in page["deliveries"]:  # still on the first step: one hour again
            assert d["status"] == "pending"
            assert time.time() + 3000 < parse_time(d["next_attempt_at"], "n") < time.time() + 3700
        assert (await admin.post("/api/subscriptions/nope/flush"))[0] == 404


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def _status(admin: Admin, delivery_id: str) -> str:
    _, body = await admin.get(f"/api/deliveries/{delivery_id}")
    return str(body["status"])


async def test_replay_by_id_by_window_and_as_new(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    async with receiving() as other:
        config = admin_config(
            mosquitto,
            tmp_path,
            [_crm(receiver), {"name": "archive", "url": other.url, "events": ["device.*"]}],
        )
        async with running_bridge(config), admin_client(config) as admin:
            with Publisher(mosquitto.port) as device:
                device.publish_all([_event(1), _event(2)])
            await wait_until(lambda: len(receiver.requests) == 2)
            first, second = (r.headers["webhook-id"] for r in receiver.requests)

            status, body = await admin.post("/api/replay", json={"event_ids": [first]})
            assert status == 200
            assert body["count"] == 1
            assert body["deliveries"][0]["subscription"] == "crm"
            await wait_until(lambda: len(receiver.requests) == 3)
            assert receiver.requests[-1].headers["webhook-id"] == first

            status, body = await admin.post(
                "/api/replay", json={"event_ids": [first], "to": "archive", "as_new": True}
            )
            assert status == 200
            assert body["deliveries"][0]["subscription"] == "archive"
            await wait_until(lambda: len(other.requests) == 1)
            fresh = other.requests[0].json()
            assert fresh["id"] not in {first, second}
            assert fresh["type"] == "session.started"

            status, body = await admin.post(
                "/api/replay", json={"subscription": "crm", "since": "2000-01-01T00:00:00Z"}
            )
            assert status == 200
            # Every event crm ever had, once each.
            replayed = [d["event_id"] for d in body["deliveries"]]
            assert sorted(replayed) == sorted([first, second])
            await wait_until(lambda: len(receiver.requests) == 5)

            for payload, expected in (
                ({}, 400),
                ({"event_ids": [first], "subscription": "crm"}, 400),
                ({"event_ids": "evt_x"}, 400),
                ({"event_ids": [first], "colour": "red"}, 400),
                ({"event_ids": [first], "as_new": "yes"}, 400),
                ({"subscription": "crm", "since": "last tuesday"}, 400),
                ({"event_ids": ["evt_missing"]}, 404),
                ({"event_ids": [first], "to": "nowhere"}, 404),
                ({"subscription": "nowhere"}, 404),
            ):
                status, body = await admin.post("/api/replay", json=payload)
                assert status == expected, (payload, body)
                assert isinstance(body["error"], str)
            status, body = await admin.call("POST", "/api/replay", json=None)
            assert status == 400


async def test_rejected_metrics_and_stats(
    mosquitto: Mosquitto, receiver: Receiver, crm_bridge: CrmBridge
) -> None:
    _, admin = crm_bridge
    with Publisher(mosquitto.port) as device:
        device.publish_all([("devices/dev-1/events", b"{not json"), _event(1)])
    await wait_until(lambda: len(receiver.requests) == 1)

    async def rejected_listed() -> bool:
        _, body = await admin.get("/api/rejected")
        return len(body["rejected"]) == 1

    await wait_until(rejected_listed, message="rejection stored")
    _, body = await admin.get("/api/rejected", params={"limit": "5"})
    (rejection,) = body["rejected"]
    assert rejection["topic"] == "devices/dev-1/events"
    assert rejection["reason"] == "invalid_json"
    assert rejection["payload_excerpt"] == "{not json"
    assert (await admin.get("/api/rejected", params={"limit": "0"}))[0] == 400

    settled = 'hookbridge_queue_depth{subscription="crm"} 0.0'

    async def queue_drained() -> bool:
        # The receiver has its request before the attempt's result is committed.
        return settled in (await admin.get("/metrics"))[1]

    await wait_until(queue_drained, message="queue depth back to 0")
    status, text = await admin.get("/metrics")
    assert status == 200
    for name in (
        "hookbridge_events_received_total",
        "hookbridge_messages_rejected_total",
        "hookbridge_deliveries_total",
        "hookbridge_attempt_latency_seconds_bucket",
        "hookbridge_end_to_end_latency_seconds_bucket",
        "hookbridge_queue_depth",
        "hookbridge_in_flight",
        "hookbridge_subscription_disabled",
        "hookbridge_broker_connected 1.0",
        "hookbridge_store_commit_seconds_bucket",
    ):
        assert name in text, name
    assert 'hookbridge_messages_rejected_total{reason="invalid_json"} 1.0' in text
    assert settled in text

    status, stats = await admin.get("/api/stats")
    assert status == 200
    assert stats["events_received"] == 1
    assert stats["counts"]["rejected"] == 1
    assert stats["broker_connected"] is True


async def test_readyz_follows_the_broker_connection(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = admin_config(mosquitto, tmp_path, [_crm(receiver)], mqtt={"reconnect_max": "1s"})
    async with running_bridge(config), admin_client(config) as admin:

        async def readiness() -> int:
            status, _ = await admin.get("/readyz", token="")
            return status

        mosquitto.stop()
        try:
            await wait_until(
                lambda: _is(readiness(), 503), timeout=10, message="not ready without broker"
            )
            _, body = await admin.get("/readyz", token="")
            assert body["ready"] is False
            assert (body["broker_connected"], body["store_writable"]) == (False, True)
            assert [r.split(":")[0] for r in body["reasons"]] == ["broker_disconnected"]
            assert (await admin.get("/healthz", token=""))[0] == 200
        finally:
            mosquitto.start()
        await wait_until(lambda: _is(readiness(), 200), timeout=15, message="ready again")


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


def test_openapi_describes_every_route_and_nothing_else(tmp_path: Path) -> None:
    from bridge.app import Bridge

    settings = parse_config(
        {
            "store": {"url": f"sqlite:///{tmp_path}/x.db"},
            "api": {"listen": None},
            "subscriptions": [],
        }
    )
    app = create_app(Bridge(settings))
    routed: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        assert isinstance(path, str)
        routed.add((path, route.method.lower()))
    document = openapi_document()
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert routed == described
    assert document["openapi"].startswith("3.")
    for path, ops in document["paths"].items():
        for op in ops.values():
            assert "200" in op["responses"], path
            if path.startswith("/api/") or path == "/metrics":
                assert op["security"] == [{"bearer": []}], path
    web.Application()  # keeps the import honest: routes are aiohttp's
