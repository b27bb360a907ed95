"""A reload applies all it says it applies, each value observed taking effect, or nothing.

A bridge runs with a real broker and real receivers; its file is rewritten
and ``POST /api/reload`` asked, as an operator does. Each reloadable value
is changed from one that visibly blocks something (a refused private target,
an hour's retry, a small payload limit, an hour between retention sweeps, a
subscription missing for presence transitions, the old API token) to one
that lets it through, and the test waits for that to happen.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import running_bridge
from tests.support.admin import Admin, admin_config, api_url
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Received, Receiver
from tests.support.waiting import wait_until

NEW_TOKEN = "adm_new_token_9876543210"


def _fail_first_s2(request: Received, _n: int) -> Answer:
    body = request.json()
    # The first attempt of event s-2 fails: only the reloaded retry schedule retries it in time.
    if body["data"].get("mark") == "s-2" and request.headers["hookbridge-attempt"] == "1":
        return Answer(500)
    return Answer(200)


def _event(mark: str, pad: int = 0) -> tuple[str, dict[str, Any]]:
    return "devices/dev-1/events", {
        "type": "session.started",
        "id": mark,
        "mark": mark,
        "pad": "x" * pad,
    }


async def _deliveries(admin: Admin, **params: str) -> list[dict[str, Any]]:
    status, body = await admin.get("/api/deliveries", params=params)
    assert status == 200, body
    found: list[dict[str, Any]] = body["deliveries"]
    return found


async def test_reload_applies_each_reloadable_value_and_refuses_restart_only_changes(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    crm = Receiver(_fail_first_s2)
    ops = Receiver()
    await crm.start()
    await ops.start()
    config = admin_config(
        mosquitto,
        tmp_path,
        [{"name": "crm", "url": crm.url, "events": ["session.*"]}],
        security={"allow_private_targets": False},
        retry={"schedule": ["1h"], "jitter": 0.0},
        limits={"max_payload": 600},
        retention={"delivered": "7d", "interval": "1h"},
        presence={"offline_after": "1s", "timeout_for": "all"},
    )
    path = tmp_path / "hookbridge.yaml"
    path.write_text(yaml.safe_dump(config))
    admin = Admin(api_url(config))
    new_admin = Admin(api_url(config), token=NEW_TOKEN)
    try:
        async with running_bridge(config) as bridge:
            bridge.config_path = path
            with Publisher(mosquitto.port) as device:
                device.publish_all([_event("b-1", pad=1000), _event("s-1")])
            # Before: the big one is refused by limits, the small one by the target guard.
            await wait_until(
                lambda: _rejected_count(admin, 1), timeout=10, message="b-1 over the limit"
            )
            await wait_until(
                lambda: _failed_on_guard(admin), timeout=10, message="s-1 refused by the guard"
            )

            changed = copy.deepcopy(config)
            changed["security"] = {"allow_private_targets": True}
            changed["retry"] = {"schedule": ["100ms", "100ms", "100ms"], "jitter": 0.0}
            changed["limits"] = {"max_payload": 65536}
            changed["retention"] = {"delivered": "1s", "interval": "1s"}
            changed["api"]["token"] = NEW_TOKEN
            changed["subscriptions"].append(
                {"name": "ops", "url": ops.url, "events": ["device.offline"]}
            )
            path.write_text(yaml.safe_dump(changed))
            status, body = await admin.post("/api/reload")
            assert status == 200, body
            assert body["applied"] is True and body["restart_needed"] == []
            assert body["added"] == ["ops"]
            assert sorted(body["sections"]) == [
                "api.token",
                "limits",
                "retention",
                "retry",
                "security",
                "subscriptions",
            ]

            # api.token: the old token is refused, the new one taken.
            assert (await admin.get("/api/subscriptions"))[0] == 401
            assert (await new_admin.get("/api/subscriptions"))[0] == 200

            with Publisher(mosquitto.port) as device:
                device.publish_all([_event("b-2", pad=1000), _event("s-2")])
            # limits: b-2 passes; security: 127.0.0.1 is reached; retry: s-2's 500 is retried.
            await wait_until(
                lambda: {"b-2", "s-2"} <= _delivered_marks(crm),
                timeout=15,
                message="b-2 and s-2 delivered under the reloaded limits, guard and retry",
            )
            s2 = [r for r in crm.requests if r.json()["data"]["mark"] == "s-2"]
            assert [r.headers["hookbridge-attempt"] for r in s2] == ["1", "2"]

            # retention: delivered deliveries older than 1 s are purged by a sweep every second.
            await wait_until(
                lambda: _none_delivered(new_admin),
                timeout=15,
                message="delivered deliveries purged under the reloaded retention",
            )

            # presence routing: a timed-out device's synthetic offline goes to the new "ops".
            with Publisher(mosquitto.port) as sensor:
                sensor.publish_all([("devices/dev-p/status", {"state": "online", "heartbeat": 1})])
            await wait_until(
                lambda: any(_offline_of(e, "dev-p") for e in ops.events()),
                timeout=20,
                message="heartbeat timeout routed to the reloaded subscription",
            )
            offline = next(e for e in ops.events() if _offline_of(e, "dev-p"))
            assert offline["data"]["reason"] == "heartbeat_timeout"

            # A change only a restart can make: nothing of the file is applied.
            refused = copy.deepcopy(changed)
            refused["mqtt"]["keepalive"] = "45s"
            refused["api"]["listen"] = "127.0.0.1:1"
            refused["subscriptions"] = refused["subscriptions"][:1]
            path.write_text(yaml.safe_dump(refused))
            status, body = await new_admin.post("/api/reload")
            assert status == 409, body
            assert body["applied"] is False
            assert body["restart_needed"] == ["mqtt.keepalive", "api.listen"]
            assert "mqtt.keepalive changes only on restart" in body["error"]
            _, subs = await new_admin.get("/api/subscriptions")
            assert [s["name"] for s in subs["subscriptions"]] == ["crm", "ops"]
    finally:
        await admin.close()
        await new_admin.close()
        await crm.stop()
        await ops.stop()


def _delivered_marks(receiver: Receiver) -> set[str]:
    """Marks of requests answered 2xx (the script fails only s-2's first attempt)."""
    return {r.json()["data"]["mark"] for r in receiver.requests if _answered_ok(r)}


def _answered_ok(request: Received) -> bool:
    return _fail_first_s2(request, 0).status == 200


async def _rejected_count(admin: Admin, count: int) -> bool:
    status, body = await admin.get("/api/rejected")
    assert status == 200, body
    reasons = [r["reason"] for r in body["rejected"]]
    return reasons == ["too_large"] * count


async def _failed_on_guard(admin: Admin) -> bool:
    found = await _deliveries(admin, subscription="crm")
    return any("loopback" in (d["last_error"] or "") for d in found)


async def _none_delivered(admin: Admin) -> bool:
    delivered = await _deliveries(admin, status="delivered")
    return not delivered


def _offline_of(event: dict[str, Any], device: str) -> bool:
    return bool(event["type"] == "device.offline" and event["data"]["device_id"] == device)
