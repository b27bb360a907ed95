"""The device directory part of the store conformance suite.

:class:`DirectoryStoreContract` is a base of ``tests.store_contract.StoreContract``,
so every backend runs it with the same ``store`` fixture.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from bridge.core.events import Event
from bridge.core.presence import Observation, Presence
from bridge.errors import StoreError
from bridge.store.base import Store
from bridge.store.rows import (
    Accepted,
    AttemptOutcome,
    AttemptRecord,
    DeliveryStatus,
    DeviceSummary,
)
from tests.store_contract_device import AFTER, POLICY

__all__ = ["DirectoryStoreContract"]

T0 = 1_800_000_000.0
ONLINE, OFFLINE = Presence.ONLINE, Presence.OFFLINE


def _event(key: str, device: str | None, kind: str, at: float) -> Event:
    data: dict[str, object] = {"n": key}
    if device is not None:
        data["device_id"] = device
    return Event(
        id=f"evt_dir_{key}",
        type=kind,
        # The device's clock: an hour behind the receipt, so the two are told apart.
        timestamp=datetime.fromtimestamp(at - 3600, UTC),
        source=f"mqtt://broker/devices/{device}/events",
        data=data,
    )


def _seen(key: str, device: str, kind: str, at: float, says: Presence | None = None) -> Accepted:
    """An event of a device whose presence is tracked."""
    observation = Observation(device, at, says)
    return Accepted(_event(key, device, kind, at), ("crm", "ops"), at, presence=observation)


def _plain(key: str, device: str | None, kind: str, at: float) -> Accepted:
    """An event stored without presence tracking."""
    return Accepted(_event(key, device, kind, at), ("crm",), at)


async def _ingest(store: Store, items: Sequence[Accepted], now: float) -> None:
    await store.ingest(items, [], now=now, owner="a", lease_until=now - 1, presence=POLICY)


async def _fleet(store: Store) -> None:
    """Online: d-1, d-3, é-5; offline: d-2 (said so), d-4 (timed out);
    known from events only: x_1, x%2; an event with no device."""
    await _ingest(
        store,
        [
            _seen("1", "d-1", "device.online", T0, ONLINE),
            _seen("2", "d-2", "device.online", T0, ONLINE),
            _seen("3", "d-3", "reading", T0 + 1),
            _seen("4", "d-4", "reading", T0 + 1),
            _seen("5", "é-5", "reading", T0 + 2),
            _seen("6", "d-2", "device.offline", T0 + 5, OFFLINE),
            _seen("7", "d-1", "reading", T0 + 6),
        ],
        T0 + 6,
    )
    await store.ingest(
        [
            _plain("8", "x_1", "reading", T0 + 7),
            _plain("9", "x%2", "reading", T0 + 8),
            _plain("10", None, "reading", T0 + 9),
        ],
        [],
        now=T0 + 9,
        owner="a",
        lease_until=T0,
    )
    # d-4 falls silent; the others are seen again in time.
    await _ingest(
        store,
        [
            _seen("11", "d-1", "reading", T0 + 50),
            _seen("12", "d-3", "reading", T0 + 50),
            _seen("13", "é-5", "reading", T0 + 50),
        ],
        T0 + 50,
    )
    await store.claim_presence_timeouts(
        now=T0 + 70, policy=POLICY, owner="a", lease_until=T0, limit=100
    )


async def _every_page(
    store: Store, *, state: Presence | None = None, prefix: str | None = None, limit: int = 2
) -> list[DeviceSummary]:
    found: list[DeviceSummary] = []
    cursor: str | None = None
    for _ in range(20):
        page, cursor = await store.list_devices(
            state=state, prefix=prefix, cursor=cursor, limit=limit
        )
        assert len(page) <= limit
        found += page
        if cursor is None:
            return found
    raise AssertionError("paging did not end")


def _ids(devices: Sequence[DeviceSummary]) -> list[str]:
    return [d.device_id for d in devices]


class DirectoryStoreContract:
    async def test_directory_lists_every_known_device_in_id_order(self, store: Store) -> None:
        await _fleet(store)
        everything = await _every_page(store, limit=100)
        # Byte order of the UTF-8: "é" after every ASCII letter.
        assert _ids(everything) == ["d-1", "d-2", "d-3", "d-4", "x%2", "x_1", "é-5"]
        by_id = {d.device_id: d for d in everything}
        one = by_id["d-1"]
        assert (one.state, one.changed_at, one.last_seen) == (ONLINE, T0, T0 + 50)
        assert one.last_event is not None
        assert (one.last_event.id, one.last_event.type) == ("evt_dir_11", "reading")
        assert one.last_event.received_at == T0 + 50
        assert one.last_event.timestamp == T0 + 50 - 3600
        two = by_id["d-2"]
        assert (two.state, two.changed_at, two.last_seen) == (OFFLINE, T0 + 5, T0 + 5)
        assert two.last_event is not None and two.last_event.type == "device.offline"
        four = by_id["d-4"]
        assert (four.state, four.reason) == (OFFLINE, "heartbeat_timeout")
        assert four.changed_at == T0 + 1 + AFTER
        # The announced timeout is the device's latest event.
        assert four.last_event is not None and four.last_event.type == "device.offline"
        # Known from events alone: no state; last seen at the last event's receipt.
        x1 = by_id["x_1"]
        assert (x1.state, x1.changed_at, x1.last_seen) == (None, None, T0 + 7)
        assert x1.last_event is not None and x1.last_event.id == "evt_dir_8"

    async def test_directory_pages_with_a_cursor(self, store: Store) -> None:
        await _fleet(store)
        everything = _ids(await _every_page(store, limit=100))
        for limit in (1, 2, 3, 7):
            assert _ids(await _every_page(store, limit=limit)) == everything
        page, cursor = await store.list_devices(state=None, prefix=None, cursor=None, limit=7)
        assert len(page) == 7 and cursor is None
        with pytest.raises(StoreError):
            await store.list_devices(state=None, prefix=None, cursor="garbage!", limit=5)
        with pytest.raises(StoreError):
            await store.list_devices(state=None, prefix=None, cursor=None, limit=0)

    async def test_directory_filters_by_state_and_prefix(self, store: Store) -> None:
        await _fleet(store)
        assert _ids(await _every_page(store, state=ONLINE)) == ["d-1", "d-3", "é-5"]
        assert _ids(await _every_page(store, state=OFFLINE)) == ["d-2", "d-4"]
        assert _ids(await _every_page(store, prefix="d-")) == ["d-1", "d-2", "d-3", "d-4"]
        assert _ids(await _every_page(store, prefix="d-", state=OFFLINE, limit=1)) == [
            "d-2",
            "d-4",
        ]
        assert _ids(await _every_page(store, prefix="é")) == ["é-5"]
        # A prefix is matched literally: no LIKE wildcards.
        assert _ids(await _every_page(store, prefix="x_")) == ["x_1"]
        assert _ids(await _every_page(store, prefix="x%")) == ["x%2"]
        assert _ids(await _every_page(store, prefix="d-4")) == ["d-4"]
        assert await _every_page(store, prefix="nobody") == []
        assert await _every_page(store, prefix="x", state=ONLINE) == []

    async def test_a_device_shows_its_recent_events_and_their_deliveries(
        self, store: Store
    ) -> None:
        await _fleet(store)
        detail = await store.get_device("d-1", events=20)
        assert detail is not None
        assert detail.device.state is ONLINE
        assert [e.event.id for e in detail.events] == ["evt_dir_11", "evt_dir_7", "evt_dir_1"]
        newest = detail.events[0]
        assert newest.event.received_at == T0 + 50
        assert sorted(d.subscription for d in newest.deliveries) == ["crm", "ops"]
        assert {d.status for d in newest.deliveries} == {DeliveryStatus.PENDING}

        # One delivered, one dead: the detail shows where each stands.
        crm, ops = sorted(newest.deliveries, key=lambda d: d.subscription)
        await store.record_attempts(
            [
                (
                    AttemptRecord(crm.id, 1, T0 + 51, 5.0, 200, None, None),
                    AttemptOutcome(DeliveryStatus.DELIVERED),
                ),
                (
                    AttemptRecord(ops.id, 1, T0 + 51, 5.0, 410, None, None),
                    AttemptOutcome(DeliveryStatus.DEAD, reason="gone"),
                ),
            ],
            now=T0 + 51,
        )
        latest = await store.get_device("d-1", events=1)
        assert latest is not None and len(latest.events) == 1
        after = {d.subscription: d for d in latest.events[0].deliveries}
        assert (after["crm"].status, after["crm"].attempts, after["crm"].last_status_code) == (
            DeliveryStatus.DELIVERED,
            1,
            200,
        )
        assert (after["ops"].status, after["ops"].dead_reason) == (DeliveryStatus.DEAD, "gone")
        assert after["crm"].next_attempt_at is None

        # A collapsed event (a repeat of the known state) is kept, delivered to nobody.
        two = await store.get_device("d-2", events=20)
        assert two is not None
        assert [e.event.type for e in two.events] == ["device.offline", "device.online"]
        plain = await store.get_device("x%2", events=5)
        assert plain is not None and plain.device.state is None
        assert [len(e.deliveries) for e in plain.events] == [1]
        assert await store.get_device("nobody", events=20) is None
        assert await store.get_device("d-", events=20) is None

    async def test_a_forgotten_device_leaves_the_directory_until_it_is_seen_again(
        self, store: Store
    ) -> None:
        await _fleet(store)
        assert await store.forget_device("d-2")
        assert await store.forget_device("x_1")  # known without presence
        assert not await store.forget_device("d-2")
        assert not await store.forget_device("nobody")
        assert _ids(await _every_page(store)) == ["d-1", "d-3", "d-4", "x%2", "é-5"]
        assert _ids(await _every_page(store, state=OFFLINE)) == ["d-4"]
        assert await store.get_device("d-2", events=5) is None
        assert await store.get_presence("d-2") is None
        # Its events stay for inspection and replay.
        assert await store.get_event("evt_dir_6") is not None

        # Seen again: back as a device never seen (online, no synthetic transition).
        await _ingest(store, [_seen("20", "d-2", "reading", T0 + 80)], T0 + 80)
        back = await store.get_device("d-2", events=1)
        assert back is not None
        assert (back.device.state, back.device.changed_at, back.device.reason) == (
            ONLINE,
            T0 + 80,
            None,
        )
        assert [e.event.id for e in back.events] == ["evt_dir_20"]

    async def test_the_latest_event_never_moves_back(self, store: Store) -> None:
        await _ingest(store, [_seen("30", "late-1", "reading", T0 + 10)], T0 + 10)
        # A batch committed later that holds an event received earlier.
        await store.ingest(
            [_plain("31", "late-1", "reading", T0 + 5)], [], now=T0 + 11, owner="b", lease_until=T0
        )
        (device,), _ = await store.list_devices(state=None, prefix="late-", cursor=None, limit=5)
        assert device.last_event is not None
        assert (device.last_event.id, device.last_seen) == ("evt_dir_30", T0 + 10)
