"""Retention: the bounds on a fake clock, the sweep on a real store, and end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import RetentionSettings
from bridge.delivery.retention import Retention, retention_bounds, too_old
from bridge.store.base import AttemptOutcome, DeliveryStatus
from bridge.store.sqlite.store import SQLiteStore
from tests.conftest import SECRET, bridge_config, running_bridge
from tests.store_contract import T0, accepted, attempt, ingest, make_event
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import Publisher
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

durations = st.floats(min_value=0, max_value=1e8, allow_nan=False)


@given(now=st.floats(min_value=1e9, max_value=4e9), d=durations, dead=durations, age=durations)
def test_bounds_are_now_minus_each_setting(now: float, d: float, dead: float, age: float) -> None:
    settings = RetentionSettings(delivered=d, dead=dead, max_event_age=age)
    bounds = retention_bounds(settings, now)
    assert bounds.delivered_before == now - d
    assert bounds.dead_before == now - dead
    assert bounds.occurred_before == now - age
    assert bounds.delivered_before <= now and bounds.occurred_before <= now


@given(age=st.floats(min_value=1, max_value=1e7), offset=st.floats(min_value=-1e7, max_value=1e7))
def test_too_old_exactly_when_older_than_max_age(age: float, offset: float) -> None:
    now = T0
    occurred = datetime.fromtimestamp(now - age + offset, UTC)
    expected = occurred.timestamp() < now - age
    assert too_old(occurred, now=now, max_event_age=age) is expected


def test_too_old_defaults_to_three_days() -> None:
    settings = RetentionSettings()
    now = T0
    two_days = datetime.fromtimestamp(now, UTC) - timedelta(days=2)
    four_days = datetime.fromtimestamp(now, UTC) - timedelta(days=4)
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
    stale = make_event(3, at=T0 - 400)  # within max age now, too old 200 s later
    done, dead = await ingest(store, [accepted(done_event, "crm"), accepted(dead_event, "crm")])
    waiting = await ingest(store, [accepted(stale, "crm")], lease_until=T0 - 1)
    await store.record_attempts(
        [
            (attempt(done, at=T0, code=200), AttemptOutcome(DeliveryStatus.DELIVERED)),
            (attempt(dead, at=T0, code=500), AttemptOutcome(DeliveryStatus.DEAD, reason="x")),
        ],
        now=T0,
    )
    first = await retention.sweep()
    assert (first.expired, first.purged) == (0, 0)

    clock[0] = T0 + 200  # past `delivered`, not `dead`; the stale event is now too old
    second = await retention.sweep()
    assert second.expired == 1
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


async def test_end_to_end_old_events_go_dead_and_delivered_ones_are_purged(
    mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path
) -> None:
    config = bridge_config(
        mosquitto,
        tmp_path,
        [{"name": "crm", "url": receiver.url, "secret": SECRET}],
        retention={"delivered": "300ms", "dead": "1h", "max_event_age": "10m", "interval": "100ms"},
    )
    long_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    async with running_bridge(config) as bridge:
        with Publisher(mosquitto.port) as device:
            device.publish_all(
                [
                    ("devices/dev-1/events", {"type": "session.started", "id": "fresh"}),
                    (
                        "devices/dev-1/events",
                        {"type": "session.ended", "id": "stale", "occurred_at": long_ago},
                    ),
                ]
            )
        await wait_until(lambda: len(receiver.requests) >= 1, timeout=15)

        async def stale_is_dead() -> bool:
            counts = await bridge.store.counts()
            return counts.get("dead", 0) == 1

        await wait_until(stale_is_dead, timeout=10, message="stale event dead")
        dead, _ = await bridge.store.list_deliveries(
            subscription="crm",
            status=DeliveryStatus.DEAD,
            since=None,
            until=None,
            cursor=None,
            limit=10,
        )
        assert [d.dead_reason for d in dead] == ["too_old"]
        attempts = await bridge.store.attempts(dead[0].id)
        assert [(a.status_code, a.error) for a in attempts] == [
            (None, "event older than retention.max_event_age")
        ]

        async def delivered_purged() -> bool:
            counts = await bridge.store.counts()
            return counts.get("delivered", 0) == 0 and bridge.retention.sweeps >= 2

        await wait_until(delivered_purged, timeout=10, message="delivered purged")
    assert [r.json()["type"] for r in receiver.requests] == ["session.started"]
