"""Retention: the bounds on a fake clock, the sweep on a real store, and end to end."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import RetentionSettings
from bridge.delivery.retention import Retention, retention_bounds, too_old
from bridge.store.rows import AttemptOutcome, DeliveryStatus
from bridge.store.sqlite.store import SQLiteStore
from tests.conftest import SECRET, bridge_config, crm_subscription, running_bridge
from tests.store_contract import T0, accepted, attempt, ingest, make_event
from tests.support.admin import admin_client, admin_config
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Answer, Received, Receiver, receiving
from tests.support.waiting import wait_until

durations = st.floats(min_value=0, max_value=1e8, allow_nan=False)


@given(now=st.floats(min_value=1e9, max_value=4e9), d=durations, dead=durations, age=durations)
def test_bounds_are_now_minus_each_setting(now: float, d: float, dead: float, age: float) -> None:
    settings = RetentionSettings(delivered=d, dead=dead, max_event_age=age)
    bounds = retention_bounds(settings, now)
    assert bounds.delivered_before == now - d
    assert bounds.dead_before == now - dead
    assert bounds.received_before == now - age
    assert bounds.delivered_before <= now and bounds.received_before <= now


@given(age=st.floats(min_value=1, max_value=1e7), offset=st.floats(min_value=-1e7, max_value=1e7))
def test_too_old_exactly_when_held_longer_than_max_age(age: float, offset: float) -> None:
    now = T0
    start = now - age + offset
    assert too_old(start, now=now, max_event_age=age) is (start < now - age)


def test_too_old_defaults_to_three_days() -> None:
    settings = RetentionSettings()
    now = T0
    two_days = now - timedelta(days=2).total_seconds()
    four_days = now - timedelta(days=4).total_seconds()
    assert not too_old(two_days, now=now, max_event_age=settings.max_event_age)
    assert too_old(four_days, now=now, max_event_age=settings.max_event_age)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "retention.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_sweep_on_a_fake_clock_purges_and_expires(store: SQLiteStore) -> None:
    clock = [T0]
    settings = RetentionSettings(delivered=100, dead=1000, max_event_age=500, interval=60)
    retention = Retention(settings, store, clock=lambda: clock[0])
    done_event, dead_event = make_event(1), make_event(2)
    stale = make_event(3)  # received 400 s ago: within max age now, too old 200 s later
    done, dead = await ingest(store, [accepted(done_event, "crm"), accepted(dead_event, "crm")])
    waiting = await ingest(store, [accepted(stale, "crm")], now=T0 - 400, lease_until=T0 - 1)
    await store.record_attempts(
        [
            (attempt(done, at=T0, code=200), AttemptOutcome(DeliveryStatus.DELIVERED)),
            (attempt(dead, at=T0, code=500), AttemptOutcome(DeliveryStatus.DEAD, reason="x")),
        ],
        now=T0,
    )
    first = await retention.sweep()
    assert (first.expired, first.purged) == ({}, 0)

    clock[0] = T0 + 200  # past `delivered`, not `dead`; the stale event is now too old
    second = await retention.sweep()
    assert second.expired == {"crm": 1}
    assert await store.get_delivery(done.id) is None
    assert await store.get_delivery(dead.id) is not None
    expired = await store.get_delivery(waiting[0].id)
    assert expired is not None
    assert (expired.status, expired.dead_reason) == (DeliveryStatus.DEAD, "too_old")

    clock[0] = T0 + 2000  # past `dead` for both dead deliveries
    await retention.sweep()
    assert await store.get_delivery(dead.id) is None
    assert await store.get_delivery(waiting[0].id) is None
    assert retention.sweeps == 3


async def test_end_to_end_age_counts_from_receipt_and_held_deliveries_expire_with_an_alert(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    def script(request: Received, _n: int) -> Answer:
        return Answer(status=500 if request.path == "/down" else 200)

    async with receiving(script) as receiver:
        hook = receiver.url
        config = bridge_config(
            mosquitto,
            tmp_path,
            [
                {"name": "fresh", "url": hook, "secret": SECRET, "events": ["session.*"]},
                {"name": "down", "url": hook.replace("/hook", "/down"), "events": ["session.*"]},
                {"name": "ops", "url": hook.replace("/hook", "/ops"), "events": ["bridge.*"]},
            ],
            # One failure, then the next try is an hour away: the delivery is held.
            retry={"schedule": ["1h"], "jitter": 0.0},
            retention={
                "delivered": "300ms",
                "dead": "1h",
                "max_event_age": "2s",
                "interval": "100ms",
            },
        )
        an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        device_clock_in_2001 = "2001-01-01T00:00:00Z"
        async with running_bridge(config) as bridge:
            with Publisher(mosquitto.port) as device:
                device.publish_all(
                    [
                        (
                            "devices/dev-1/events",
                            {"type": "session.started", "id": "a", "occurred_at": an_hour_ago},
                        ),
                        (
                            "devices/dev-1/events",
                            {
                                "type": "session.ended",
                                "id": "b",
                                "occurred_at": device_clock_in_2001,
                            },
                        ),
                    ]
                )

            def at(path: str) -> list[dict[str, Any]]:
                return [r.json() for r in receiver.requests if r.path == path]

            # The device's clock is the envelope's timestamp, not the age: both arrive.
            await wait_until(lambda: len(at("/hook")) >= 2, timeout=15, message="both delivered")
            stamps = {e["type"]: e["timestamp"] for e in at("/hook")}
            assert stamps["session.ended"].startswith("2001-01-01T00:00:00")
            # Held by the failing subscription for longer than max_event_age: one alert.
            await wait_until(lambda: bool(at("/ops")), timeout=15, message="an expiry alert")
            (alert,) = at("/ops")
            assert alert["type"] == "bridge.deliveries_expired"
            assert alert["data"] == {"subscription": "down", "reason": "too_old", "count": 2}
            assert bridge.metrics.too_old.labels("down")._value.get() == 2
            dead, _ = await bridge.store.list_deliveries(
                subscription="down",
                status=DeliveryStatus.DEAD,
                since=None,
                until=None,
                cursor=None,
                limit=10,
            )
            assert [d.dead_reason for d in dead] == ["too_old", "too_old"]

            async def delivered_purged() -> bool:
                counts = await bridge.store.counts()
                return counts.get("delivered", 0) == 0 and bridge.retention.sweeps >= 2

            await wait_until(delivered_purged, timeout=10, message="delivered purged")


async def test_a_disabled_subscriptions_queue_does_not_age(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = admin_config(
        mosquitto,
        tmp_path,
        [crm_subscription(receiver)],
        retention={"max_event_age": "1s", "interval": "100ms"},
    )
    async with running_bridge(config) as bridge, admin_client(config) as admin:
        status, _ = await admin.post("/api/subscriptions/crm/disable")
        assert status == 200
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [
                    ("devices/dev-1/events", {"type": "session.started", "id": f"p-{i}"})
                    for i in range(5)
                ]
            )

        async def queued() -> bool:
            return (await bridge.store.counts()).get("pending", 0) == 5

        await wait_until(queued, timeout=10, message="five deliveries queued")
        paused_at, sweeps = time.monotonic(), bridge.retention.sweeps
        # Paused for twice max_event_age, over many sweeps: nothing expires.
        await wait_until(
            lambda: time.monotonic() - paused_at > 2.0 and bridge.retention.sweeps > sweeps + 5,
            timeout=15,
            message="a pause longer than max_event_age",
        )
        assert (await bridge.store.counts()).get("dead", 0) == 0
        status, _ = await admin.post("/api/subscriptions/crm/enable")
        assert status == 200
        await wait_until(lambda: len(receiver.requests) >= 5, timeout=15, message="all sent")
        assert (await bridge.store.counts()).get("dead", 0) == 0
