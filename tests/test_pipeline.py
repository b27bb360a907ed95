"""End to end through a real mosquitto and real HTTP receivers: the core promise."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from bridge.core.events import CATALOGUE
from tests.conftest import SECRET, bridge_config, crm_subscription, running_bridge
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Receiver, receiving
from tests.support.waiting import wait_until

SAMPLES: dict[str, dict[str, Any]] = {
    "device.added": {"device_name": "Front desk PC", "os": "windows", "group": "jakarta"},
    "device.deleted": {"device_name": "Front desk PC"},
    "device.online": {"reason": "boot"},
    "device.offline": {"reason": "shutdown"},
    "session.started": {"session_id": "s-981", "technician": "ayu", "seq": 17},
    "session.ended": {"session_id": "s-981", "duration_s": 1260},
    "session.scheduled": {"session_id": "s-982", "scheduled_for": "2026-11-24T09:00:00Z"},
    "session.customer_joined": {
        "session_id": "s-981",
        "customer": "Budi",
        "customer_email": "b@x.id",
    },
    "file_transfer.started": {"transfer_id": "t-1", "file_name": "log.zip", "direction": "upload"},
    "file_transfer.completed": {"transfer_id": "t-1", "size_bytes": 52311, "direction": "upload"},
    "file_transfer.failed": {"transfer_id": "t-2", "error": "disk full", "reason": "io"},
    "bulk_deployment.started": {
        "deployment_id": "bd-7",
        "package": "agent-4.2",
        "target_count": 40,
    },
    "bulk_deployment.completed": {"deployment_id": "bd-7", "succeeded": 39, "failed": 1},
    "bulk_deployment.failed": {"deployment_id": "bd-8", "error": "package missing"},
    "telemetry.reported": {"cpu_percent": 12.5, "memory_mb": 2048},
}


def _event_message(device: str, event_type: str, n: int) -> tuple[str, dict[str, Any]]:
    payload = {"type": event_type, "id": f"m-{n}", **SAMPLES.get(event_type, {})}
    return f"devices/{device}/events", payload


async def test_every_catalogue_type_is_delivered_signed(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    # Presence off: after the sample device.offline, the next event would also
    # bring a synthetic device.online (seen_again); presence has its own tests.
    config = bridge_config(
        mosquitto, tmp_path, [crm_subscription(receiver)], presence={"enabled": False}
    )
    device_types = [t for t in CATALOGUE if not t.startswith("bridge.")]
    async with running_bridge(config):
        with Publisher(mosquitto.port) as device:
            device.publish_all([_event_message("dev-42", t, i) for i, t in enumerate(device_types)])
            await wait_until(lambda: len(receiver.requests) >= len(device_types), timeout=15)
    verifier = Webhook(SECRET)
    seen = {}
    for request in receiver.requests:
        envelope = verifier.verify(request.body, request.headers)
        assert request.headers["webhook-id"] == envelope["id"]
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("hookbridge/")
        assert request.headers["hookbridge-attempt"] == "1"
        assert request.headers["hookbridge-delivery-id"].startswith("dlv_")
        assert envelope["source"].endswith("/devices/dev-42/events")
        assert envelope["data"]["device_id"] == "dev-42"
        assert envelope["id"].startswith("evt_")
        seen[envelope["type"]] = envelope["data"]
    assert set(seen) == set(device_types)
    assert seen["session.started"]["seq"] == 17
    assert seen["file_transfer.completed"]["size_bytes"] == 52311


async def test_status_and_lifecycle_topics(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = bridge_config(mosquitto, tmp_path, [crm_subscription(receiver)])
    async with running_bridge(config):
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [
                    ("devices/dev-7/lifecycle", {"action": "added", "device_name": "Kiosk"}),
                    ("devices/dev-7/status", "online"),
                    ("devices/dev-7/status", {"state": "offline", "reason": "shutdown"}),
                    ("devices/dev-7/lifecycle", {"action": "deleted"}),
                ]
            )
            await wait_until(lambda: len(receiver.requests) >= 4, timeout=15)
    types = sorted(e["type"] for e in receiver.events())
    assert types == ["device.added", "device.deleted", "device.offline", "device.online"]


async def test_retry_after_server_error_then_success(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with receiving(lambda _r, n: Answer(500 if n == 0 else 200)) as receiver:
        config = bridge_config(mosquitto, tmp_path, [crm_subscription(receiver)])
        async with running_bridge(config) as bridge:
            with Publisher(mosquitto.port) as device:
                device.publish_all([_event_message("dev-1", "session.started", 1)])
                await wait_until(lambda: len(receiver.requests) >= 2, timeout=15)
            first, second = receiver.requests[:2]
            assert first.headers["webhook-id"] == second.headers["webhook-id"]
            assert second.headers["hookbridge-attempt"] == "2"
            delivery_id = second.headers["hookbridge-delivery-id"]

            async def delivered() -> bool:
                d = await bridge.store.get_delivery(delivery_id)
                return d is not None and d.status.value == "delivered"

            await wait_until(delivered, timeout=10, message="delivery marked delivered")
            attempts = await bridge.store.attempts(delivery_id)
            assert [a.status_code for a in attempts] == [500, 200]


async def test_gone_disables_subscription_and_keeps_delivery(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with receiving(lambda _r, _n: Answer(410)) as receiver:
        config = bridge_config(mosquitto, tmp_path, [crm_subscription(receiver)])
        async with running_bridge(config) as bridge:
            with Publisher(mosquitto.port) as device:
                device.publish_all([_event_message("dev-1", "session.started", 1)])
                await wait_until(lambda: len(receiver.requests) >= 1, timeout=15)

                async def disabled() -> bool:
                    states = await bridge.store.subscription_states()
                    return "crm" in states and states["crm"].disabled

                await wait_until(disabled, timeout=10, message="subscription disabled")
                device.publish_all([_event_message("dev-1", "session.ended", 2)])
                await wait_until(
                    lambda: (
                        bridge.metrics.events_received.labels("session.ended")._value.get() >= 1
                    ),
                    timeout=10,
                )
            assert len(receiver.requests) == 1  # nothing more is sent while disabled
            assert await bridge.store.queue_depth("crm") == 2  # both kept


async def test_retry_after_is_honoured(mosquitto: Mosquitto, tmp_path: Path) -> None:
    receiver = Receiver(
        lambda _r, n: Answer(429, headers={"Retry-After": "1"}) if n == 0 else Answer(200)
    )
    await receiver.start()
    try:
        config = bridge_config(mosquitto, tmp_path, [crm_subscription(receiver)])
        async with running_bridge(config):
            with Publisher(mosquitto.port) as device:
                device.publish_all([_event_message("dev-1", "session.started", 1)])
                await wait_until(lambda: len(receiver.requests) >= 2, timeout=15)
        gap = receiver.requests[1].at - receiver.requests[0].at
        assert gap >= 0.9, f"retried after {gap:.3f}s despite Retry-After: 1"
    finally:
        await receiver.stop()


async def test_bad_messages_are_rejected_and_the_rest_flows(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = bridge_config(
        mosquitto, tmp_path, [crm_subscription(receiver)], limits={"max_payload": "4KB"}
    )
    bad: list[tuple[str, bytes | str | dict[str, Any]]] = [
        ("devices/dev-1/events", b"{not json"),
        ("devices/dev-1/events", {"type": "session.exploded"}),
        ("devices/dev-1/events", b'{"type": "session.started", "technician": "\xff\xfe"}'),
        ("devices/dev-1/events", json.dumps({"type": "session.started", "pad": "x" * 5000})),
        ("devices/dev-1/events", {"type": "file_transfer.completed", "size_bytes": "big"}),
    ]
    good = [_event_message("dev-1", "session.started", i) for i in range(3)]
    async with running_bridge(config) as bridge:
        with Publisher(mosquitto.port) as device:
            device.publish_all([good[0], *bad[:3], good[1], *bad[3:], good[2]])
            await wait_until(lambda: len(receiver.requests) >= 3, timeout=15)

            async def all_rejected() -> bool:
                return len(await bridge.store.list_rejected(limit=100)) >= len(bad)

            await wait_until(all_rejected, timeout=10, message="rejections stored")
            rejected = await bridge.store.list_rejected(limit=100)
    reasons = sorted(r.reason for r in rejected)
    assert reasons == sorted(
        ["invalid_json", "unknown_type", "invalid_utf8", "too_large", "invalid_fields"]
    )
    assert all(r.detail for r in rejected)
    assert {e["id"] for e in receiver.events()} == {
        r.headers["webhook-id"] for r in receiver.requests
    }
    assert len(receiver.unique_ids()) == 3


async def test_redelivered_message_with_device_id_is_stored_once(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = bridge_config(mosquitto, tmp_path, [crm_subscription(receiver)])
    async with running_bridge(config) as bridge:
        with Publisher(mosquitto.port) as device:
            message = _event_message("dev-9", "session.started", 77)
            device.publish_all([message, message])
            await wait_until(lambda: bridge.metrics.events_duplicate._value.get() >= 1, timeout=10)
            await wait_until(lambda: len(receiver.requests) >= 1, timeout=10)
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_protocol_versions(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path, protocol: str
) -> None:
    config = bridge_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver)],
        mqtt={"protocol": protocol, "client_id": f"hb-proto-{protocol}-{time.time_ns()}"},
    )
    async with running_bridge(config):
        with Publisher(mosquitto.port) as device:
            device.publish_all([_event_message("dev-3", "device.added", 1)])
            await wait_until(lambda: len(receiver.requests) >= 1, timeout=15)
    assert receiver.events()[0]["type"] == "device.added"
